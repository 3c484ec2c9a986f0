'use strict';
// A legacy amoCRM integration, as old code runs it: the npm package
// amocrm-api@1.3.1 (written by others, used here unmodified) logs in through
// /private/api/auth.php?type=json with a JSON body, keeps the session cookie,
// then calls /private/api/v2/json/... . The integration tests point it at
// amobridge and check what amoCRM (the fake) received.
//
// Usage: node legacy_client.js [BASE_URL [LOGIN [HASH]]]
//   each defaults to $AMO_BASE_URL, $AMO_LOGIN, $AMO_HASH. Prefer $AMO_HASH for
//   the key (USER_HASH): an argument shows in the process list.
// Prints one JSON object on stdout: {"ok":true, ...results} or
// {"ok":false,"step":..,"error":..,"status":..,"body":..}, and exits 1 on failure.
// The key and the session cookie's value are never printed.

const buildClient = require('amocrm-api');

const baseUrl = process.argv[2] || process.env.AMO_BASE_URL || '';
const login = process.argv[3] || process.env.AMO_LOGIN || '';
const hash = process.argv[4] || process.env.AMO_HASH || '';

function fail(step, err) {
	const out = { ok: false, step: step };
	if (err && typeof err.status === 'number') {
		// axios 0.7 rejects a non-2xx answer with the response itself.
		out.error = 'HTTP ' + err.status;
		out.status = err.status;
		out.body = err.data;
	} else {
		out.error = String(err && err.message ? err.message : err);
	}
	process.stdout.write(JSON.stringify(out) + '\n');
	process.exit(1);
}

async function main() {
	if (!baseUrl || !login || !hash) {
		fail('args', new Error('need BASE_URL, LOGIN and HASH (arguments, or $AMO_BASE_URL, $AMO_LOGIN, $AMO_HASH)'));
	}
	const client = buildClient(baseUrl);
	const out = { ok: true };
	let step = 'auth';
	try {
		const auth = await client.auth({ USER_LOGIN: login, USER_HASH: hash });
		out.auth = auth && auth.response;
		// The library keeps the cookies it got; show their names only.
		out.cookie_names = String(client.headers.Cookie || '')
			.split(';').map(function (c) { return c.split('=')[0].trim(); }).filter(Boolean);

		step = 'getCurrentAccount';
		const account = await client.getCurrentAccount();
		out.account = { id: account.id, name: account.name, subdomain: account.subdomain, current_user: account.current_user };

		step = 'getLeads';
		const leads = await client.getLeads({ limit_rows: 10, limit_offset: 0 });
		out.leads = leads && leads.response && leads.response.leads;

		step = 'createLead';
		out.created = await client.createLead({ name: 'Lead from amocrm-api', price: 1500 });
	} catch (err) {
		fail(step, err);
	}
	process.stdout.write(JSON.stringify(out) + '\n');
}

main();
