package legacy

import (
	"net/url"
	"testing"
)

func TestClassifyName(t *testing.T) {
	q := scope{}
	u := scope{unsorted: true, authPHP: true}
	tests := []struct {
		raw   string
		sc    scope
		p     param
		array bool
	}{
		{"USER_LOGIN", q, pUserLogin, false},
		{"USER_HASH", q, pUserHash, false},
		{"USER%5FLOGIN", q, pUserLogin, false},
		{"USER%5fHASH", q, pUserHash, false},
		{"%55%53%45%52%5F%4C%4F%47%49%4E", q, pUserLogin, false},
		{"USER.LOGIN", q, pUserLogin, false},
		{"USER+LOGIN", q, pUserLogin, false},
		{"USER%20HASH", q, pUserHash, false},
		{"+.+USER_HASH", q, pNone, false}, // only leading spaces go: "__USER_HASH"
		{"+++USER_HASH", q, pUserHash, false},
		{"USER[LOGIN", q, pUserLogin, false},
		{"USER%5BHASH", q, pUserHash, false},
		{"USER_LOGIN[]", q, pUserLogin, true},
		{"USER_LOGIN[x]", q, pUserLogin, true},
		{"USER_LOGIN[x]junk", q, pUserLogin, true},
		{"USER.LOGIN[a.b][", q, pUserLogin, true},
		{"USER_LOGIN[a%00]", q, pNone, false}, // cut at NUL: "USER_LOGIN[a" -> "USER_LOGIN_a"
		{"USER_LOGIN%00[]", q, pUserLogin, false},
		{"USER_LOGIN[aaaaaaaaaaaaaaaaaaaaaa]", q, pUserLogin, true},
		{"USER_LOGIN[aaaaaaaaaaaaaaaaaaaaaa", q, pNone, false},
		{"USER_LOGIN_", q, pNone, false},
		{"USER_LOGINX", q, pNone, false},
		{"user_login", q, pNone, false},
		{"[USER_LOGIN]", q, pNone, false},
		{"%zzUSER_LOGIN", q, pNone, false},
		{"USER_LOGIN%", q, pNone, false},
		{"login", q, pNone, false},
		{"login", u, pLogin, false},
		{"api.key", u, pAPIKey, false},
		{"api[key", u, pAPIKey, false},
		{"type", u, pType, false},
		{"type", q, pNone, false},
		{"", q, pNone, false},
		{"+", q, pNone, false},
	}
	for _, tt := range tests {
		p, array := classifyName(tt.raw, true, tt.sc)
		if p != tt.p || array != tt.array {
			t.Errorf("classifyName(%q) = %v, %v; want %v, %v", tt.raw, p, array, tt.p, tt.array)
		}
		// The oracle agrees.
		name, oarray := oraclePHPName(oracleURLDecode(tt.raw))
		want := tt.p != pNone
		if got := oracleIsCred(name, tt.sc.unsorted) || tt.sc.authPHP && name == "type"; got != want || want && oarray != tt.array {
			t.Errorf("oracle(%q) = %q %v, disagrees", tt.raw, name, oarray)
		}
		// Decoded names (r.Form keys) classify the same.
		if dec, err := url.QueryUnescape(tt.raw); err == nil {
			if p2, a2 := classifyName(dec, false, tt.sc); p2 != p || a2 != array {
				t.Errorf("classifyName(%q, decoded) = %v %v", dec, p2, a2)
			}
		}
	}
}

func TestDecodeValue(t *testing.T) {
	for _, c := range []struct {
		in, out string
		ok      bool
	}{
		{"abc", "abc", true},
		{"a%40b", "a@b", true},
		{"a+b", "a b", true},
		{"%2B", "+", true},
		{"%", "", false},
		{"%4", "", false},
		{"%zz", "", false},
		{"%e9", "\xe9", true},
	} {
		got, ok := decodeValue(c.in)
		if got != c.out || ok != c.ok {
			t.Errorf("decodeValue(%q) = %q %v", c.in, got, ok)
		}
	}
	if got := decodeLenient("a%zz%41+"); got != "a%zzA " {
		t.Errorf("decodeLenient = %q", got)
	}
}
