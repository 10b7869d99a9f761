-- name: AuditInsert :exec
INSERT INTO audit_log (actor_id, action, target_type, target_id, detail, ip)
VALUES (@actor_id, @action, @target_type, @target_id, @detail, @ip);
