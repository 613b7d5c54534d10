DROP TABLE processed_reports;
