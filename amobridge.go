// Package amobridge is a Caddy v2 plugin that lets legacy amoCRM integrations
// (USER_LOGIN + USER_HASH) keep working now that amoCRM wants OAuth 2.0.
//
// Importing this package registers the Caddy modules (the http.handlers.amocrm_auth
// handler, the amocrm app, its admin API and the `caddy amocrm` command), which is
// what `xcaddy build --with github.com/amobridge/amobridge` does.
package amobridge

import (
	// Register the Caddy modules.
	_ "github.com/amobridge/amobridge/caddymodule"
)
