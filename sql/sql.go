// Package sql holds Tollgate's schema migrations and sqlc queries. It embeds the
// migrations so every binary carries the schema it was built for.
package sql

import "embed"

// Migrations holds sql/migrations/NNNN_name.up.sql, applied in name order.
//
//go:embed migrations/*.up.sql
var Migrations embed.FS
