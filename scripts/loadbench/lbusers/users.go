// Package lbusers names the load benchmark's users, so that the seeding
// program, the load generator and the wrk script agree: user i has the login
// user<i>@example.com and the API key Key(i).
package lbusers

import (
	"fmt"
	"net/url"
)

// Login is user i's login.
func Login(i int) string { return fmt.Sprintf("user%d@example.com", i) }

// Key is user i's legacy API key (USER_HASH): 40 hex digits. wrk's Lua
// script builds it as string.format("%08x", i) .. Suffix.
func Key(i int) string { return fmt.Sprintf("%08x", i) + Suffix }

// Suffix is the constant part of every key.
const Suffix = "0000000000000000000000000000a5a5"

// Query is user i's legacy credentials as a query string.
func Query(i int) string {
	return "USER_LOGIN=" + url.QueryEscape(Login(i)) + "&USER_HASH=" + Key(i)
}
