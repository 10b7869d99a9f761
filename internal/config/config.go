// Package config reads each process's environment into a typed struct, once, at start.
// A missing or malformed variable stops the process with one sentence naming it.
package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/tollgate/tollgate/internal/account"
	"github.com/tollgate/tollgate/internal/limit"
)

// Common holds what every process needs.
type Common struct {
	Env         string `env:"ENV" envDefault:"development"`
	LogLevel    string `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat   string `env:"LOG_FORMAT"` // text|json; default text in development, json otherwise
	DatabaseURL string `env:"DATABASE_URL,required"`
	RedisURL    string `env:"REDIS_URL,required"`
	RedisPrefix string `env:"REDIS_PREFIX" envDefault:"tg:"`
	SecretKey   string `env:"SECRET_KEY,required"`
}

// Production reports whether ENV=production.
func (c Common) Production() bool { return c.Env == "production" }

// Secret returns the 32 bytes of SECRET_KEY.
func (c Common) Secret() []byte {
	b, _ := hex.DecodeString(c.SecretKey) // validated at load
	return b
}

func (c *Common) validate() error {
	switch c.Env {
	case "development", "production", "test":
	default:
		return fmt.Errorf("ENV must be development, production or test, not %q", c.Env)
	}
	if c.LogFormat == "" {
		c.LogFormat = "json"
		if c.Env != "production" {
			c.LogFormat = "text"
		}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("LOG_FORMAT must be text or json, not %q", c.LogFormat)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, not %q", c.LogLevel)
	}
	if b, err := hex.DecodeString(c.SecretKey); err != nil || len(b) != 32 {
		return errors.New("SECRET_KEY must be 64 hex characters (32 random bytes), e.g. from `openssl rand -hex 32`")
	}
	if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return errors.New("DATABASE_URL must be a postgres:// URL")
	}
	if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return errors.New("REDIS_URL must be a redis:// or rediss:// URL")
	}
	return nil
}

// Web is cmd/web's configuration.
type Web struct {
	Common
	Addr           string `env:"WEB_ADDR" envDefault:":8080"`
	BaseURL        string `env:"BASE_URL" envDefault:"http://localhost:8080"`
	ProxyPublicURL string `env:"PROXY_PUBLIC_URL" envDefault:"http://localhost:8081"`
	SMTPURL        string `env:"SMTP_URL"`
	MailFrom       string `env:"MAIL_FROM" envDefault:"Tollgate <no-reply@localhost>"`
	Registration   string `env:"REGISTRATION" envDefault:"open"`
	AdminEmail     string `env:"ADMIN_EMAIL"`
	AdminPassword  string `env:"ADMIN_PASSWORD"`
	// UpstreamAllowPrivate lets upstream base URLs point at loopback or private networks
	// (fakellm in development). Off by default: it is the SSRF guard.
	UpstreamAllowPrivate bool `env:"UPSTREAM_ALLOW_PRIVATE" envDefault:"false"`
}

// Proxy is cmd/proxy's configuration.
type Proxy struct {
	Common
	Addr                 string `env:"PROXY_ADDR" envDefault:":8081"`
	UpstreamAllowPrivate bool   `env:"UPSTREAM_ALLOW_PRIVATE" envDefault:"false"`
	Limits               limit.Options
	OAuth                OAuth
	// QuotaFlushEvery: how often the proxy writes the quota headers it saw per account.
	QuotaFlushEvery time.Duration `env:"QUOTA_FLUSH_INTERVAL" envDefault:"15s"`
	// Slow clients: the request headers must arrive within ReadHeaderTimeout and the
	// whole request (headers and body) within ReadTimeout, or the connection is closed.
	ReadHeaderTimeout time.Duration `env:"PROXY_READ_HEADER_TIMEOUT" envDefault:"10s"`
	ReadTimeout       time.Duration `env:"PROXY_READ_TIMEOUT" envDefault:"2m"`
	// SpoolDir keeps usage events the proxy could hand neither to Redis nor to
	// PostgreSQL, until it can, and the journal of events whose delivery is under way
	// (usage.Journal). Put it on a persistent volume in production.
	SpoolDir   string        `env:"PROXY_SPOOL_DIR"`
	SpoolEvery time.Duration `env:"PROXY_SPOOL_INTERVAL" envDefault:"10s"`
	// A streamed request's upstream must send its response headers within
	// UpstreamHeaderTimeout (or the request fails over to another account, else 504),
	// and then never go quiet for UpstreamIdleTimeout (or the stream is cut and billed for
	// what it reported). 0 turns either off. (relay/stall.go)
	UpstreamHeaderTimeout time.Duration `env:"UPSTREAM_HEADER_TIMEOUT" envDefault:"2m"`
	UpstreamIdleTimeout   time.Duration `env:"UPSTREAM_IDLE_TIMEOUT" envDefault:"5m"`
	// UpstreamResponseTimeout: a non-streamed answer (whose headers come with the whole
	// answer) must come within it, or the request fails as a streamed one without headers
	// does. 10 min: the official SDKs' own default timeout; Anthropic requires streaming
	// for anything that may take longer.
	UpstreamResponseTimeout time.Duration `env:"UPSTREAM_RESPONSE_TIMEOUT" envDefault:"10m"`
	// AdaptiveProcs: run on one thread while nearly idle, on every CPU under load
	// (proxyapp.adaptProcs). Ignored when GOMAXPROCS is set.
	AdaptiveProcs bool `env:"PROXY_ADAPTIVE_PROCS" envDefault:"true"`
}

// OAuth names the token endpoints and client ids that redeem OAuth accounts' refresh
// tokens. Tollgate ships no client id of its own or anyone else's: an operator who adds
// OAuth accounts sets the values their tokens were issued for.
type OAuth struct {
	AnthropicTokenURL string `env:"ANTHROPIC_OAUTH_TOKEN_URL" envDefault:"https://console.anthropic.com/v1/oauth/token"`
	AnthropicClientID string `env:"ANTHROPIC_OAUTH_CLIENT_ID"`
	OpenAITokenURL    string `env:"OPENAI_OAUTH_TOKEN_URL" envDefault:"https://auth.openai.com/oauth/token"`
	OpenAIClientID    string `env:"OPENAI_OAUTH_CLIENT_ID"`
}

// Clients maps each provider to where and as whom its refresh tokens are redeemed.
func (o OAuth) Clients() map[string]account.OAuthClient {
	return map[string]account.OAuthClient{
		"anthropic": {TokenURL: o.AnthropicTokenURL, ClientID: o.AnthropicClientID},
		"openai":    {TokenURL: o.OpenAITokenURL, ClientID: o.OpenAIClientID},
	}
}

// Worker is cmd/worker's configuration.
type Worker struct {
	Common
	HealthAddr  string `env:"WORKER_HEALTH_ADDR" envDefault:":8082"`
	FXSourceURL string `env:"FX_SOURCE_URL"`
	// UsageClaimIdle: usage entries a worker read but did not acknowledge for this long
	// (it died mid-batch) are taken over by another worker.
	UsageClaimIdle time.Duration `env:"USAGE_CLAIM_IDLE" envDefault:"30s"`
	// UsageLinger: after a short batch the consumer waits this long before reading again,
	// so that busy periods are stored in few large transactions (0: read again at once).
	UsageLinger time.Duration `env:"USAGE_LINGER" envDefault:"50ms"`
	OAuth       OAuth
	// OAuthRefreshAhead: OAuth access tokens expiring within this are refreshed by the
	// oauth_refresh job, which runs every OAuthRefreshEvery.
	OAuthRefreshAhead time.Duration `env:"OAUTH_REFRESH_AHEAD" envDefault:"10m"`
	OAuthRefreshEvery time.Duration `env:"OAUTH_REFRESH_INTERVAL" envDefault:"1m"`
}

// LoadWeb reads and validates cmd/web's environment.
func LoadWeb() (Web, error) {
	var c Web
	if err := parse(&c); err != nil {
		return c, err
	}
	if err := c.Common.validate(); err != nil {
		return c, err
	}
	switch c.Registration {
	case "open", "invite", "closed":
	default:
		return c, fmt.Errorf("REGISTRATION must be open, invite or closed, not %q", c.Registration)
	}
	for name, v := range map[string]string{"BASE_URL": c.BaseURL, "PROXY_PUBLIC_URL": c.ProxyPublicURL} {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, fmt.Errorf("%s must be an absolute http(s) URL, not %q", name, v)
		}
	}
	if c.Production() && strings.HasPrefix(c.BaseURL, "http://") {
		return c, errors.New("BASE_URL must be https:// in production (session cookies are Secure)")
	}
	return c, nil
}

// LoadProxy reads and validates cmd/proxy's environment.
func LoadProxy() (Proxy, error) {
	var c Proxy
	if err := parse(&c); err != nil {
		return c, err
	}
	switch c.Limits.RedisOutage {
	case limit.OutageRefuse, limit.OutageServe:
	default:
		return c, fmt.Errorf("REDIS_OUTAGE must be refuse or serve, not %q", c.Limits.RedisOutage)
	}
	return c, c.Common.validate()
}

// LoadWorker reads and validates cmd/worker's environment.
func LoadWorker() (Worker, error) {
	var c Worker
	if err := parse(&c); err != nil {
		return c, err
	}
	if c.OAuthRefreshEvery < time.Second {
		// Periodic runs are unique per interval, which River counts in whole seconds.
		return c, fmt.Errorf("OAUTH_REFRESH_INTERVAL must be at least 1s, not %s", c.OAuthRefreshEvery)
	}
	if c.OAuthRefreshAhead <= c.OAuthRefreshEvery {
		return c, fmt.Errorf("OAUTH_REFRESH_AHEAD (%s) must be longer than OAUTH_REFRESH_INTERVAL (%s): a token must not expire between two runs",
			c.OAuthRefreshAhead, c.OAuthRefreshEvery)
	}
	return c, c.Common.validate()
}

// parse turns the library's aggregate error into one line naming the first variable.
func parse(v any) error {
	err := env.Parse(v)
	if err == nil {
		return nil
	}
	var agg env.AggregateError
	if errors.As(err, &agg) && len(agg.Errors) > 0 {
		return errors.New(agg.Errors[0].Error())
	}
	return err
}
