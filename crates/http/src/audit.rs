//! An `AuditSink` that writes each event as one structured log line (target
//! `keyward::audit`), until the durable, hash-chained audit store of issue #5 exists.

use keyward_domain::audit::{AuditEvent, AuditSink};

#[derive(Debug, Default, Clone, Copy)]
pub struct TracingAuditSink;

impl AuditSink for TracingAuditSink {
    fn record(&self, event: AuditEvent) {
        let metadata = serde_json::Value::Object(event.metadata);
        tracing::info!(
            target: "keyward::audit",
            event_id = %event.id,
            account_id = event.account_id.map(|a| a.to_string()),
            actor = %event.actor,
            action = event.action,
            resource_type = event.resource_type,
            resource_id = event.resource_id,
            result = event.result.as_str(),
            ip = event.context.ip.map(|ip| ip.to_string()),
            request_id = event.context.request_id.map(|r| r.to_string()),
            %metadata,
            "audit"
        );
    }
}
