package tokenstore

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"time"
)

// Coordinator is what several users of one store must agree on: the
// broker's atomic steps on shared state. A store kept by one process (Badger)
// coordinates in memory (Local); a store shared by a cluster (Redis) does so
// across processes, on its own clock.
type Coordinator interface {
	// Update reads the user's token from the shared store itself (never
	// from a cache that may lag behind another process's write), lets fn
	// change a copy and, if fn returns true, stores the copy (synced) as
	// one atomic step: a write
	// that lost a race with another writer is not made, and fn is called
	// again with the newer token. It returns the token stored at the end
	// (the changed copy, or the stored one fn left alone). ErrNotFound if
	// the user has no token. Compare-and-set writes (a refresh keyed by the
	// refresh token it spent) are Updates whose fn checks that token.
	Update(ctx context.Context, account, login string, fn func(*Token) bool) (*Token, error)

	// ClaimAttempt records a as the user's exchange attempt if the last one
	// was made interval or longer before a.At, and reports true: the caller
	// may call exchange_api_key. Otherwise it returns the last attempt and
	// false. One claim wins however many callers race. A store with a
	// clock of its own (Redis) judges by that clock and records a with At
	// set to it. An Attempt put later with a zero At withdraws the claim.
	ClaimAttempt(ctx context.Context, a Attempt, interval time.Duration) (Attempt, bool, error)

	// Lock takes the named lock, waiting until it is free or ctx ends, and
	// returns the function that gives it back. A lock held by a process
	// that dies is freed after a while (longer than any call to amoCRM);
	// a live holder keeps it for as long as it needs.
	Lock(ctx context.Context, name string) (unlock func(), err error)

	// Lease reports whether this process holds (or has now taken) the
	// named lease for ttl: one holder at a time across the cluster, which
	// must call Lease again before ttl passes to keep it.
	Lease(ctx context.Context, name string, ttl time.Duration) (bool, error)

	// Reserve takes the next turn of the queue named key, whose turns are
	// every apart (the first one at once), and returns how long the caller
	// must wait for it. If the turn is more than maxWait away it takes
	// none and returns ok false, with wait the time until a turn would be
	// within maxWait. Turns are never given back.
	Reserve(ctx context.Context, key string, every, maxWait time.Duration) (wait time.Duration, ok bool, err error)

	// Subscribe calls fn, in its own goroutine, after any user's token is
	// changed or deleted by any process sharing the store (for Local: by
	// this one), and also with an empty account and login when changes may
	// have been missed (a reconnect): then every user may have changed.
	// fn must not block for long. The returned function stops the calls.
	Subscribe(fn func(account, login string)) (cancel func())
}

// storedReader is a store whose cache serves tokens without their refresh
// token (see Token.RefreshToken): Update reads the stored pair itself.
type storedReader interface {
	getStored(ctx context.Context, account, login string) (*Token, error)
}

// Local is the Coordinator of a store that one process keeps: mutexes and
// queues in memory. Its Update, ClaimAttempt and Subscribe work on the
// store given to NewLocal; that store must call Changed after every token
// write and delete.
type Local struct {
	s       Store
	seed    maphash.Seed
	stripes [64]sync.Mutex // Update and ClaimAttempt, per user

	mu     sync.Mutex
	locks  map[string]chan struct{} // held locks: closed when given back
	queues map[string]time.Time     // Reserve: the next free turn of each queue
	subs   map[int]func(account, login string)
	nextID int
}

// NewLocal returns the in-memory Coordinator of s.
func NewLocal(s Store) *Local {
	return &Local{s: s, seed: maphash.MakeSeed(), locks: make(map[string]chan struct{}),
		queues: make(map[string]time.Time), subs: make(map[int]func(string, string))}
}

// Hold serializes a write of the user's token that is not an Update (a
// Delete) with the user's Updates; call the returned function when done.
// The store must not call it from within Put, which Update calls.
func (l *Local) Hold(account, login string) (release func()) {
	mu := l.stripe(account, login)
	mu.Lock()
	return mu.Unlock
}

func (l *Local) stripe(account, login string) *sync.Mutex {
	return &l.stripes[maphash.String(l.seed, account+"\x00"+login)%uint64(len(l.stripes))]
}

// Update implements Coordinator.
func (l *Local) Update(ctx context.Context, account, login string, fn func(*Token) bool) (*Token, error) {
	mu := l.stripe(account, login)
	mu.Lock()
	defer mu.Unlock()
	var cur *Token
	var err error
	if sr, ok := l.s.(storedReader); ok {
		cur, err = sr.getStored(ctx, account, login)
	} else {
		cur, err = l.s.Get(ctx, account, login)
	}
	if err != nil {
		return nil, err
	}
	t := cloneToken(cur)
	if !fn(t) {
		return cur, nil
	}
	if err := l.s.Put(ctx, t); err != nil {
		return nil, err
	}
	return t, nil
}

// ClaimAttempt implements Coordinator, judging by a.At.
func (l *Local) ClaimAttempt(ctx context.Context, a Attempt, interval time.Duration) (Attempt, bool, error) {
	mu := l.stripe(a.Account, a.Login)
	mu.Lock()
	defer mu.Unlock()
	last, err := l.s.GetAttempt(ctx, a.Account, a.Login)
	switch {
	case err == nil && a.At.Sub(last.At) < interval:
		return last, false, nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return Attempt{}, false, err
	}
	if err := l.s.PutAttempt(ctx, a); err != nil {
		return Attempt{}, false, err
	}
	return a, true, nil
}

// Lock implements Coordinator.
func (l *Local) Lock(ctx context.Context, name string) (func(), error) {
	for {
		l.mu.Lock()
		held, ok := l.locks[name]
		if !ok {
			ch := make(chan struct{})
			l.locks[name] = ch
			l.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					l.mu.Lock()
					delete(l.locks, name)
					l.mu.Unlock()
					close(ch)
				})
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Lease implements Coordinator: one process, always the holder.
func (l *Local) Lease(context.Context, string, time.Duration) (bool, error) { return true, nil }

// maxQueues bounds Reserve's memory: past it, queues whose next turn has
// come are forgotten (a new queue starts with a turn at once, as they would).
const maxQueues = 10000

// Reserve implements Coordinator.
func (l *Local) Reserve(_ context.Context, key string, every, maxWait time.Duration) (time.Duration, bool, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	next, ok := l.queues[key]
	if !ok && len(l.queues) >= maxQueues {
		for k, t := range l.queues {
			if !t.After(now) {
				delete(l.queues, k)
			}
		}
	}
	if next.Before(now) {
		next = now
	}
	wait := next.Sub(now)
	if wait > maxWait {
		return wait - maxWait, false, nil
	}
	l.queues[key] = next.Add(every)
	return wait, true, nil
}

// Subscribe implements Coordinator.
func (l *Local) Subscribe(fn func(account, login string)) func() {
	l.mu.Lock()
	defer l.mu.Unlock()
	id := l.nextID
	l.nextID++
	l.subs[id] = fn
	return func() {
		l.mu.Lock()
		delete(l.subs, id)
		l.mu.Unlock()
	}
}

// Changed tells the subscribers that the user's token changed.
func (l *Local) Changed(account, login string) {
	l.mu.Lock()
	fns := make([]func(string, string), 0, len(l.subs))
	for _, fn := range l.subs {
		fns = append(fns, fn)
	}
	l.mu.Unlock()
	for _, fn := range fns {
		go fn(account, login)
	}
}
