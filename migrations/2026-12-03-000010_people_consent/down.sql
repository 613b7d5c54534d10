DROP TABLE invitations;
ALTER TABLE sessions DROP COLUMN password_change_required;
ALTER TABLE users DROP COLUMN password_change_required;
