package account

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// ValidateBaseURL guards against SSRF: an upstream base URL must be http(s), carry no
// credentials, query or fragment, and — unless allowPrivate — resolve only to public
// addresses (no loopback, private, link-local, CGNAT or unspecified ranges).
func ValidateBaseURL(ctx context.Context, raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("base URL is not a URL: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return errors.New("base URL must start with https:// (or http://)")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Host == "" {
		return errors.New("base URL must be scheme://host[:port][/path] without credentials, query or fragment")
	}
	if allowPrivate {
		return nil
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return errors.New("base URL must not point at this machine")
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return fmt.Errorf("base URL host %q does not resolve", host)
		}
		addrs = ips
	}
	for _, a := range addrs {
		if !Public(a) {
			return fmt.Errorf("base URL host %q resolves to a non-public address", host)
		}
	}
	return nil
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// Public reports whether an address is routable on the public internet.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsValid() && a.IsGlobalUnicast() && !a.IsPrivate() && !cgnat.Contains(a) &&
		!a.IsLoopback() && !a.IsLinkLocalUnicast() && !a.IsUnspecified()
}
