-- name: SessionDeleteExpired :execrows
-- Expired web sessions; scs already ignores them, this only reclaims the space.
DELETE FROM sessions WHERE expiry < now();
