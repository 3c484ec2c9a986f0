package legacy

import (
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"
)

// AuthAccount is the account block of auth.php's success answer.
type AuthAccount struct {
	ID                                  int64
	Name, Subdomain, Language, Timezone string
}

// AuthUser is the user block of auth.php's success answer.
type AuthUser struct {
	ID       int64
	Language string
}

// WriteError writes e in the legacy JSON error shape:
//
//	{"response":{"error":"<text>","error_code":"<code>","server_time":<unix>}}
//
// with e.Status, Content-Type application/json; charset=utf-8,
// Cache-Control: no-store and, when e.RetryAfter > 0, Retry-After. A nil e
// is written as a 500.
func WriteError(w http.ResponseWriter, e *Error, now time.Time) {
	e = orInternal(e)
	b := make([]byte, 0, 96+len(e.Text))
	b = append(b, `{"response":{"error":`...)
	b = appendJSONString(b, e.Text)
	b = append(b, `,"error_code":`...)
	b = appendJSONString(b, e.code())
	b = append(b, `,"server_time":`...)
	b = strconv.AppendInt(b, now.Unix(), 10)
	b = append(b, "}}"...)
	write(w, e, "application/json; charset=utf-8", b)
}

// WriteAuthOK writes auth.php's success answer, 200, in format f:
//
//	{"response":{"auth":true,"accounts":[{"id":..,"name":..,"subdomain":..,"language":..,"timezone":..}],"user":{"id":..,"language":..},"server_time":..}}
//
// or, in XML (Content-Type text/xml; charset=utf-8),
//
//	<root><auth>true</auth><accounts><account><id>..</id><name>..</name><subdomain>..</subdomain><language>..</language><timezone>..</timezone></account></accounts><user><id>..</id><language>..</language></user><server_time>..</server_time></root>
//
// It does not set the session cookie: the caller does, before calling it.
func WriteAuthOK(w http.ResponseWriter, f Format, a AuthAccount, u AuthUser, now time.Time) {
	var b []byte
	if f == JSON {
		b = append(b, `{"response":{"auth":true,"accounts":[{"id":`...)
		b = strconv.AppendInt(b, a.ID, 10)
		b = append(b, `,"name":`...)
		b = appendJSONString(b, a.Name)
		b = append(b, `,"subdomain":`...)
		b = appendJSONString(b, a.Subdomain)
		b = append(b, `,"language":`...)
		b = appendJSONString(b, a.Language)
		b = append(b, `,"timezone":`...)
		b = appendJSONString(b, a.Timezone)
		b = append(b, `}],"user":{"id":`...)
		b = strconv.AppendInt(b, u.ID, 10)
		b = append(b, `,"language":`...)
		b = appendJSONString(b, u.Language)
		b = append(b, `},"server_time":`...)
		b = strconv.AppendInt(b, now.Unix(), 10)
		b = append(b, "}}"...)
		write(w, nil, "application/json; charset=utf-8", b)
		return
	}
	b = append(b, "<root><auth>true</auth><accounts><account><id>"...)
	b = strconv.AppendInt(b, a.ID, 10)
	b = append(b, "</id><name>"...)
	b = appendXMLText(b, a.Name)
	b = append(b, "</name><subdomain>"...)
	b = appendXMLText(b, a.Subdomain)
	b = append(b, "</subdomain><language>"...)
	b = appendXMLText(b, a.Language)
	b = append(b, "</language><timezone>"...)
	b = appendXMLText(b, a.Timezone)
	b = append(b, "</timezone></account></accounts><user><id>"...)
	b = strconv.AppendInt(b, u.ID, 10)
	b = append(b, "</id><language>"...)
	b = appendXMLText(b, u.Language)
	b = append(b, "</language></user><server_time>"...)
	b = strconv.AppendInt(b, now.Unix(), 10)
	b = append(b, "</server_time></root>"...)
	write(w, nil, "text/xml; charset=utf-8", b)
}

// WriteAuthError writes auth.php's error answer with e.Status, in format f:
//
//	{"response":{"auth":false,"error":..,"error_code":..,"ip":..,"domain":..,"server_time":..}}
//
// or <root><auth>false</auth><error>..</error><error_code>..</error_code><ip>..</ip><domain>..</domain><server_time>..</server_time></root>.
// ip is the client's address and domain the host it asked for.
func WriteAuthError(w http.ResponseWriter, f Format, e *Error, ip, domain string, now time.Time) {
	e = orInternal(e)
	var b []byte
	if f == JSON {
		b = append(b, `{"response":{"auth":false,"error":`...)
		b = appendJSONString(b, e.Text)
		b = append(b, `,"error_code":`...)
		b = appendJSONString(b, e.code())
		b = append(b, `,"ip":`...)
		b = appendJSONString(b, ip)
		b = append(b, `,"domain":`...)
		b = appendJSONString(b, domain)
		b = append(b, `,"server_time":`...)
		b = strconv.AppendInt(b, now.Unix(), 10)
		b = append(b, "}}"...)
		write(w, e, "application/json; charset=utf-8", b)
		return
	}
	b = append(b, "<root><auth>false</auth><error>"...)
	b = appendXMLText(b, e.Text)
	b = append(b, "</error><error_code>"...)
	b = appendXMLText(b, e.code())
	b = append(b, "</error_code><ip>"...)
	b = appendXMLText(b, ip)
	b = append(b, "</ip><domain>"...)
	b = appendXMLText(b, domain)
	b = append(b, "</domain><server_time>"...)
	b = strconv.AppendInt(b, now.Unix(), 10)
	b = append(b, "</server_time></root>"...)
	write(w, e, "text/xml; charset=utf-8", b)
}

func orInternal(e *Error) *Error {
	if e == nil {
		return &Error{Status: http.StatusInternalServerError, Code: "500", Text: "internal error"}
	}
	return e
}

// write sends body with the headers every legacy answer has; e nil is 200.
func write(w http.ResponseWriter, e *Error, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	status := http.StatusOK
	if e != nil {
		status = e.status()
		if s := e.retryAfterSeconds(); s > 0 {
			h.Set("Retry-After", strconv.FormatInt(s, 10))
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD; <, > and & are escaped so the answer is safe anywhere.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, `\n`...)
			case c == '\r':
				b = append(b, `\r`...)
			case c == '\t':
				b = append(b, `\t`...)
			case c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// appendXMLText appends s escaped as XML character data. Characters XML
// cannot hold (most control characters, invalid UTF-8) become U+FFFD.
func appendXMLText(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '<':
			b = append(b, "&lt;"...)
		case r == '>':
			b = append(b, "&gt;"...)
		case r == '&':
			b = append(b, "&amp;"...)
		case r == '"':
			b = append(b, "&quot;"...)
		case r == '\'':
			b = append(b, "&apos;"...)
		case r == '\t' || r == '\n':
			b = append(b, s[i:i+size]...)
		case r == '\r':
			b = append(b, "&#xD;"...)
		case r < 0x20 || r == utf8.RuneError && size == 1 || r == 0xfffe || r == 0xffff:
			b = append(b, "\uFFFD"...)
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}
