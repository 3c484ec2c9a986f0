package caddymodule

import (
	"errors"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/amobridge/amobridge/exchange"
)

// Request outcomes, the values of amobridge_requests_total's outcome label.
const (
	outcomePassed    = "passed"    // no legacy credential: passed through untouched
	outcomeServed    = "served"    // forwarded with the user's token
	outcomeAuthPHP   = "auth_php"  // auth.php answered by the module
	outcomeRejected  = "rejected"  // bad credentials or session (401)
	outcomeMalformed = "malformed" // bad input (400, 413)
	outcomeLimited   = "limited"   // rate or exchange limit (429, 503)
	outcomeFailed    = "failed"    // amoCRM or the store failed (502, 503, 504)
	outcomeCallback  = "callback"  // the OAuth callback was answered
)

// metrics are amobridge's Prometheus collectors. One set lives in the usage
// pool and is registered in every configuration's metrics registry, so that
// counters survive reloads. No label carries a login, key or token.
type metrics struct {
	requests      *prometheus.CounterVec
	store         *prometheus.CounterVec
	exchanges     *prometheus.CounterVec
	refreshes     *prometheus.CounterVec
	replays       prometheus.Counter
	rateWaits     prometheus.Counter
	rateWaitSecs  prometheus.Histogram
	rateRejects   prometheus.Counter
	exchangeSecs  prometheus.Histogram
	refreshSecs   prometheus.Histogram
	tokens        *prometheus.GaugeVec
	oldestRefresh prometheus.Gauge
	lockWaitSecs  prometheus.Histogram
	storeEvents   *prometheus.CounterVec
	redisSecs     prometheus.Histogram
	redisErrors   prometheus.Counter
	stores        storeCollector

	// byOutcome and byLookup hold the children of requests and store for
	// every known label value, so that counting a request costs an atomic
	// add, not a hash of the label and a lock (written once, then only read).
	byOutcome map[string]prometheus.Counter
	byLookup  map[string]prometheus.Counter
}

const metricsPoolKey = "amobridge.metrics"

func newMetrics() *metrics {
	const ns = "amobridge"
	latency := []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_total",
			Help: "Requests seen by amocrm_auth, by outcome."}, []string{"outcome"}),
		store: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "store_lookups_total",
			Help: "Token lookups, by result (hit, miss)."}, []string{"result"}),
		exchanges: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "exchanges_total",
			Help: "exchange_api_key exchanges, by result."}, []string{"result"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "refreshes_total",
			Help: "Token refreshes, by result."}, []string{"result"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "replays_total",
			Help: "Requests replayed with a fresh token after amoCRM answered 401."}),
		rateWaits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "rate_limit_waits_total",
			Help: "Requests that waited for their turn in the per-account rate limit."}),
		rateWaitSecs: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "rate_limit_wait_seconds",
			Help: "Time requests waited in the per-account rate limit.", Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5}}),
		rateRejects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "rate_limit_rejections_total",
			Help: "Requests refused with 429 because the rate-limit queue was full."}),
		exchangeSecs: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "exchange_duration_seconds",
			Help: "Time from exchange_api_key to stored tokens.", Buckets: latency}),
		refreshSecs: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "refresh_duration_seconds",
			Help: "Time of a refresh grant, including the synced store write.", Buckets: latency}),
		tokens: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "tokens",
			Help: "Stored token pairs by state (fresh, refresh_due, expired, dead, keep_alive_due), counted by the keeper at each run."},
			[]string{"state"}),
		lockWaitSecs: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "lock_wait_seconds",
			Help: "Time a refresh waited for the user's refresh lock (in a cluster: held by another instance).", Buckets: latency}),
		storeEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "store_events_total",
			Help: "Change events from the token store, by result: token (one user's pair changed, on any instance), all (a reconnect: every cached entry re-checked)."},
			[]string{"result"}),
		redisSecs: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "redis_seconds",
			Help:    "Round-trip time of the commands and pipelines sent to Redis (cluster mode).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .5, 1}}),
		redisErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "redis_errors_total",
			Help: "Redis commands that failed (unreachable, timeout, refused), cluster mode."}),
		oldestRefresh: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "oldest_refresh_token_age_seconds",
			Help: "Age of the oldest live refresh token (amoCRM kills one unused for 3 months; keep_alive refreshes it sooner)."}),
	}
	m.stores = newStoreCollector(ns)
	m.byOutcome = children(m.requests, outcomePassed, outcomeServed, outcomeAuthPHP, outcomeRejected,
		outcomeMalformed, outcomeLimited, outcomeFailed, outcomeCallback)
	m.byLookup = children(m.store, "hit", "miss")
	return m
}

// children returns vec's counters for the given label values (which also
// makes them exported at 0 before their first count).
func children(vec *prometheus.CounterVec, values ...string) map[string]prometheus.Counter {
	out := make(map[string]prometheus.Counter, len(values))
	for _, v := range values {
		out[v] = vec.WithLabelValues(v)
	}
	return out
}

// count adds one to the child of vec for value, taken from known when it is there.
func count(vec *prometheus.CounterVec, known map[string]prometheus.Counter, value string) {
	if c, ok := known[value]; ok {
		c.Inc()
		return
	}
	vec.WithLabelValues(value).Inc()
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.store, m.exchanges, m.refreshes, m.replays,
		m.rateWaits, m.rateWaitSecs, m.rateRejects, m.exchangeSecs, m.refreshSecs, m.tokens, m.oldestRefresh,
		m.lockWaitSecs, m.storeEvents, m.redisSecs, m.redisErrors, m.stores}
}

// storeCollector exports the memory figures of the token stores open in
// this process, read from them at each scrape and summed over them (one
// store per integration): how full the token cache and the packed cache
// are, to size cache_size and cache_memory, and the stores' mapped tables
// against table_memory.
type storeCollector struct {
	cached, evictions, packed, packedUsed, packedSize, dropped, mapped, released *prometheus.Desc
}

func newStoreCollector(ns string) storeCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(ns+"_"+name, help, nil, nil)
	}
	return storeCollector{
		cached:     desc("token_cache_users", "Users whose tokens the token cache holds (at most cache_size per store)."),
		evictions:  desc("token_cache_evictions_total", "Users the token cache evicted to make room for others."),
		packed:     desc("packed_cache_users", "Users in the packed cache (badger: every user read or written since the start, until cache_memory is full)."),
		packedUsed: desc("packed_cache_bytes", "Bytes of the packed cache written (badger; at most cache_memory)."),
		packedSize: desc("packed_cache_size_bytes", "The packed cache's size, cache_memory (badger; 0 when off)."),
		dropped:    desc("packed_cache_dropped_total", "Users the full packed cache let go, overwritten by newer records (badger): raise cache_memory if this grows."),
		mapped:     desc("store_mapped_resident_bytes", "Resident pages of the stores' memory-mapped tables at the last measurement (badger, with table_memory on; Linux)."),
		released:   desc("store_mapped_released_bytes_total", "Bytes of mapped table pages the stores asked the kernel to reclaim to stay under table_memory (badger)."),
	}
}

// Describe implements prometheus.Collector.
func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cached, c.evictions, c.packed, c.packedUsed, c.packedSize, c.dropped, c.mapped, c.released} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	var sum storeStats
	for _, b := range openBackends() {
		st, ok := b.stats()
		if !ok {
			continue
		}
		sum.cache.Cached += st.cache.Cached
		sum.cache.Evictions += st.cache.Evictions
		sum.cache.Packed += st.cache.Packed
		sum.cache.PackedUsed += st.cache.PackedUsed
		sum.cache.PackedSize += st.cache.PackedSize
		sum.cache.Dropped += st.cache.Dropped
		sum.pager.Resident += st.pager.Resident
		sum.pager.Released += st.pager.Released
	}
	for _, m := range []struct {
		d *prometheus.Desc
		t prometheus.ValueType
		v float64
	}{
		{c.cached, prometheus.GaugeValue, float64(sum.cache.Cached)},
		{c.evictions, prometheus.CounterValue, float64(sum.cache.Evictions)},
		{c.packed, prometheus.GaugeValue, float64(sum.cache.Packed)},
		{c.packedUsed, prometheus.GaugeValue, float64(sum.cache.PackedUsed)},
		{c.packedSize, prometheus.GaugeValue, float64(sum.cache.PackedSize)},
		{c.dropped, prometheus.CounterValue, float64(sum.cache.Dropped)},
		{c.mapped, prometheus.GaugeValue, float64(sum.pager.Resident)},
		{c.released, prometheus.CounterValue, float64(sum.pager.Released)},
	} {
		ch <- prometheus.MustNewConstMetric(m.d, m.t, m.v)
	}
}

// Destruct satisfies caddy.Destructor for the usage pool.
func (m *metrics) Destruct() error { return nil }

// loadMetrics returns the shared metrics and registers them in the
// configuration's registry.
func loadMetrics(ctx caddy.Context) (*metrics, error) {
	val, _, err := backends.LoadOrNew(metricsPoolKey, func() (caddy.Destructor, error) {
		return newMetrics(), nil
	})
	if err != nil {
		return nil, err
	}
	m := val.(*metrics)
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		for _, c := range m.collectors() {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					return nil, err
				}
			}
		}
	}
	return m, nil
}

func releaseMetrics() { _, _ = backends.Delete(metricsPoolKey) }

func (m *metrics) request(outcome string) {
	if m != nil {
		count(m.requests, m.byOutcome, outcome)
	}
}

func (m *metrics) replay() {
	if m != nil {
		m.replays.Inc()
	}
}

func (m *metrics) rateWait(d time.Duration) {
	if m != nil {
		m.rateWaits.Inc()
		m.rateWaitSecs.Observe(d.Seconds())
	}
}

func (m *metrics) rateReject() {
	if m != nil {
		m.rateRejects.Inc()
	}
}

// observe receives the broker's events (see exchange.Config.Observe).
func (m *metrics) observe(event, result string, d time.Duration) {
	if m == nil {
		return
	}
	switch event {
	case "lookup":
		count(m.store, m.byLookup, result)
	case "exchange":
		m.exchanges.WithLabelValues(result).Inc()
		if d > 0 {
			m.exchangeSecs.Observe(d.Seconds())
		}
	case "refresh":
		m.refreshes.WithLabelValues(result).Inc()
		if d > 0 {
			m.refreshSecs.Observe(d.Seconds())
		}
	case "lock":
		m.lockWaitSecs.Observe(d.Seconds())
	case "event":
		m.storeEvents.WithLabelValues(result).Inc()
	}
}

// redis receives the Redis store's command timings (RedisOptions.Observe).
func (m *metrics) redis(_ string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.redisSecs.Observe(d.Seconds())
	if err != nil {
		m.redisErrors.Inc()
	}
}

// tokenCounts receives the keeper's census (see exchange.Config.Tokens).
func (m *metrics) tokenCounts(tc exchange.TokenCounts) {
	if m == nil {
		return
	}
	m.tokens.WithLabelValues("fresh").Set(float64(tc.Fresh))
	m.tokens.WithLabelValues("refresh_due").Set(float64(tc.RefreshDue))
	m.tokens.WithLabelValues("expired").Set(float64(tc.Expired))
	m.tokens.WithLabelValues("dead").Set(float64(tc.Dead))
	m.tokens.WithLabelValues("keep_alive_due").Set(float64(tc.KeepAlive))
	m.oldestRefresh.Set(tc.OldestRefresh.Seconds())
}
