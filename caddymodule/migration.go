package caddymodule

import (
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/amobridge/amobridge/exchange"
)

// keptMigrations is how many finished bulk exchanges the admin API still
// reports; older finished ones are forgotten.
const keptMigrations = 50

// maxMigrationBody bounds an uploaded user list (about 100,000 users).
const maxMigrationBody = 16 << 20

// migrationWorkers is how many users of one bulk exchange are exchanged at
// once. amoCRM's limits hold per user, and every call to amoCRM takes its
// turn in the account's budget (the one forwarded requests share): the
// broker enforces both. A user whose turn is too far away (the budget is
// busy) is tried again when the broker says, up to migrationBusyTries times.
const migrationWorkers = 4

// migrationBusyTries bounds how often one user of a bulk exchange waits
// for the account's busy budget.
const migrationBusyTries = 100

// MigrationUser is one line of a bulk exchange list.
type MigrationUser struct {
	Account string `json:"account"`
	Login   string `json:"login"`
	APIKey  string `json:"api_key"`
}

// MigrationResult is what became of one user.
type MigrationResult struct {
	Account    string `json:"account"`
	Login      string `json:"login"`
	Status     string `json:"status"` // pending, ok, wrong_key, limited, timeout, failed
	Detail     string `json:"detail,omitempty"`
	RetryAfter string `json:"retry_after,omitempty"`
}

// MigrationStatus is a bulk exchange's progress.
type MigrationStatus struct {
	ID       string            `json:"id"`
	Started  time.Time         `json:"started"`
	Finished *time.Time        `json:"finished,omitempty"`
	Total    int               `json:"total"`
	Done     int               `json:"done"`
	Counts   map[string]int    `json:"counts"`
	Results  []MigrationResult `json:"results"`
}

// migration is a bulk exchange running in the background. The API keys of
// its list are kept in memory only until each is used, then dropped.
type migration struct {
	mu       sync.Mutex
	id       string
	started  time.Time
	finished time.Time
	results  []MigrationResult
	done     int
}

func (m *migration) status() MigrationStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := MigrationStatus{ID: m.id, Started: m.started, Total: len(m.results), Done: m.done,
		Counts: map[string]int{}, Results: append([]MigrationResult(nil), m.results...)}
	for _, r := range m.results {
		st.Counts[r.Status]++
	}
	if !m.finished.IsZero() {
		f := m.finished
		st.Finished = &f
	}
	return st
}

// parseMigrationList reads a CSV (account,login,api_key; a header line is
// allowed) or a JSON array of MigrationUser from the request body.
func parseMigrationList(r *http.Request) ([]MigrationUser, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxMigrationBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the list: %v", err)
	}
	if len(body) > maxMigrationBody {
		return nil, fmt.Errorf("the list is larger than %d bytes; split it", maxMigrationBody)
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var users []MigrationUser
	trimmed := strings.TrimSpace(string(body))
	if ct == "application/json" || strings.HasPrefix(trimmed, "[") {
		if err := json.Unmarshal(body, &users); err != nil {
			return nil, errors.New("the list is not a JSON array of {account, login, api_key}")
		}
	} else {
		cr := csv.NewReader(strings.NewReader(trimmed))
		cr.FieldsPerRecord = -1
		cr.TrimLeadingSpace = true
		for line := 1; ; line++ {
			rec, err := cr.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("CSV line %d: malformed", line)
			}
			if len(rec) != 3 {
				return nil, fmt.Errorf("CSV line %d: want 3 fields (account,login,api_key), got %d", line, len(rec))
			}
			if line == 1 && strings.EqualFold(rec[0], "account") && strings.EqualFold(rec[1], "login") {
				continue // header
			}
			users = append(users, MigrationUser{Account: rec[0], Login: rec[1], APIKey: rec[2]})
		}
	}
	if len(users) == 0 {
		return nil, errors.New("the list is empty")
	}
	for i, u := range users {
		u.Account = strings.ToLower(strings.TrimSpace(u.Account))
		u.Login = exchange.NormalizeLogin(strings.TrimSpace(u.Login))
		u.APIKey = strings.TrimSpace(u.APIKey)
		if !subdomainRE.MatchString(u.Account) || u.Login == "" || u.APIKey == "" {
			return nil, fmt.Errorf("entry %d: account must be an amoCRM subdomain, login and api_key must be set", i+1)
		}
		users[i] = u
	}
	return users, nil
}

// startMigration starts a bulk exchange on this backend.
func (b *backend) startMigration(users []MigrationUser) (*migration, error) {
	br, err := b.get(context.Background())
	if err != nil {
		return nil, err
	}
	s := b.current()
	if s == nil {
		return nil, errors.New("no running configuration uses this store")
	}
	idb := make([]byte, 8)
	_, _ = rand.Read(idb)
	m := &migration{id: hex.EncodeToString(idb), started: time.Now(), results: make([]MigrationResult, len(users))}
	for i, u := range users {
		m.results[i] = MigrationResult{Account: u.Account, Login: u.Login, Status: "pending"}
	}
	b.mu.Lock()
	if b.migrations == nil {
		b.migrations = make(map[string]*migration)
	}
	b.forgetOldMigrations()
	b.migrations[m.id] = m
	ctx := b.ctx
	b.mu.Unlock()

	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < migrationWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				u := &users[i]
				var res MigrationResult
				res = migrateOne(ctx, br, s.account(u.Account), u)
				u.APIKey = "" // used once, never kept
				m.mu.Lock()
				m.results[i] = res
				m.done++
				m.mu.Unlock()
			}
		}()
	}
	go func() {
		defer func() {
			wg.Wait()
			m.mu.Lock()
			m.finished = time.Now()
			m.mu.Unlock()
		}()
		defer close(jobs)
		for i := range users {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	return m, nil
}

func migrateOne(ctx context.Context, br *exchange.Broker, acct exchange.Account, u *MigrationUser) MigrationResult {
	res := MigrationResult{Account: u.Account, Login: u.Login}
	var err error
	for range migrationBusyTries {
		_, err = br.Token(ctx, acct, u.Login, u.APIKey)
		var ee *exchange.Error
		if !errors.As(err, &ee) || ee.Kind != exchange.KindBusy {
			break
		}
		select {
		case <-time.After(ee.RetryAfter):
		case <-ctx.Done():
			return MigrationResult{Account: u.Account, Login: u.Login, Status: "failed", Detail: "stopped"}
		}
	}
	if err == nil {
		res.Status = "ok"
		return res
	}
	ans := answerFor(err)
	res.Status, res.Detail = ans.migration, ans.detail
	var ee *exchange.Error
	if errors.As(err, &ee) && ee.Kind == exchange.KindLimited && ee.RetryAfter > 0 {
		res.RetryAfter = ee.RetryAfter.Round(time.Second).String()
	}
	return res
}

func (b *backend) migration(id string) *migration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.migrations[id]
}

func (b *backend) migrationsList() []*migration {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*migration, 0, len(b.migrations))
	for _, m := range b.migrations {
		out = append(out, m)
	}
	return out
}

// forgetOldMigrations drops the oldest finished migrations beyond
// keptMigrations. b.mu is held.
func (b *backend) forgetOldMigrations() {
	var finished []*migration
	for _, m := range b.migrations {
		m.mu.Lock()
		done := !m.finished.IsZero()
		m.mu.Unlock()
		if done {
			finished = append(finished, m)
		}
	}
	if len(finished) < keptMigrations {
		return
	}
	sort.Slice(finished, func(i, j int) bool { return finished[i].started.Before(finished[j].started) })
	for _, m := range finished[:len(finished)-keptMigrations+1] {
		delete(b.migrations, m.id)
	}
}
