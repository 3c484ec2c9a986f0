package legacy

// RedactQuery returns rawQuery, the query string of a request for path
// (the URL's decoded path, as in r.URL.Path), without every parameter that
// Strip takes for a credential there, well-formed or not: USER_LOGIN and
// USER_HASH under any name PHP reads as them ("USER.HASH", "USER%5FHASH",
// " USER_HASH", "USER_HASH[]", ...), and login and api_key on /api/unsorted/
// paths. The other parameters stay byte for byte and in order, and rawQuery
// is returned as it is when it holds none.
//
// It is meant for logs, which record a request as it arrived, before Strip
// ran: it uses Strip's own scanner, so the two never disagree on what a
// credential is. Unlike Strip it has no limit on the number of parameters
// and removes credentials that Strip would refuse (arrays, broken escapes,
// a login without its key).
func RedactQuery(path, rawQuery string) string {
	if rawQuery == "" {
		return ""
	}
	sc := scope{unsorted: isUnsorted(cleanPath(path))}
	var c collector
	var rmBuf [4]span
	rm, _ := c.scanPairs(rawQuery, sc, false, "query string", rmBuf[:0])
	if len(rm) == 0 {
		return rawQuery
	}
	return string(appendKeptPairs(make([]byte, 0, len(rawQuery)), rawQuery, rm))
}
