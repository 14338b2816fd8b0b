//! Property tests on every parser that takes outside input: the config file, rule files, the web
//! config, connection strings (URLs and key=value), and the rows PgBouncer and PostgreSQL answer.
//! Inputs are valid documents mutated at random (or made up whole); each parser must never
//! panic, and each rejection must be located (file:line:column: field: message) or give its
//! reason, without echoing a secret.

use std::path::Path;

use poolwatch::config::web::WebConfig;
use poolwatch::config::{Config, Diagnostics, PoolKey};
use poolwatch::rules::files::parse_file;
use poolwatch::secret::Connection;
use poolwatch::sources::churn::ChurnTracker;
use poolwatch::sources::rows::Rows;
use poolwatch::sources::{ErrorKind, pgbouncer, postgres};
use proptest::prelude::*;

/// Cases per property: a few thousand, each test well under a few seconds.
const CASES: u32 = 2000;

const CONFIG: &str = include_str!("../config/poolwatch.yaml");
const RULES: &str = include_str!("../rules/pool-health.yaml");
const WEB: &str = "tls_server_config:\n  cert_file: agent.crt\n  key_file: agent.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS12\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\nhttp_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  alice: $2y$04$abcdefghijklmnopqrstuu5nRLKYGt1sZ1MfTd6DCXMgSZ7P7BE6i\npoolwatch:\n  healthz_without_auth: true\n";
/// The hash of `WEB`, which no message may show.
const WEB_HASH: &str = "$2y$04$abcdefghijklmnopqrstuu5nRLKYGt1sZ1MfTd6DCXMgSZ7P7BE6i";

/// Characters that mean something to YAML, to connection strings, or to nobody.
const ALPHABET: &[char] = &[
    ':', '-', '#', '[', ']', '{', '}', ',', '\'', '"', '\n', '\t', ' ', ' ', '&', '*', '!', '|',
    '>', '%', '@', '?', '=', '/', '\\', 'a', 'z', '0', '9', '.', 'é', '🙂', '\u{0}',
];

fn edits() -> impl Strategy<Value = Vec<(u16, u8, usize)>> {
    prop::collection::vec((any::<u16>(), 0u8..5, 0..ALPHABET.len()), 1..6)
}

/// A seed with a few random edits: insert, delete, replace a character, duplicate or drop a line.
fn mutate(seed: &str, edits: &[(u16, u8, usize)]) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for &(at, op, c) in edits {
        let i = at as usize % (chars.len() + 1);
        match op {
            0 => chars.insert(i, ALPHABET[c]),
            1 if i < chars.len() => {
                chars.remove(i);
            }
            2 if i < chars.len() => chars[i] = ALPHABET[c],
            3 | 4 => {
                let start = chars[..i]
                    .iter()
                    .rposition(|c| *c == '\n')
                    .map_or(0, |p| p + 1);
                let end = chars[i..]
                    .iter()
                    .position(|c| *c == '\n')
                    .map_or(chars.len(), |p| i + p);
                let line: Vec<char> = chars[start..end].to_vec();
                if op == 3 {
                    chars.splice(start..start, line.into_iter().chain(['\n']));
                } else {
                    chars.drain(start..end);
                }
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

fn arbitrary_text() -> impl Strategy<Value = String> {
    prop::collection::vec(0..ALPHABET.len(), 0..120)
        .prop_map(|picks| picks.into_iter().map(|i| ALPHABET[i]).collect())
}

/// Every problem names the file and a field, and says something.
fn assert_located(problems: &Diagnostics, origin: &Path, text: &str) {
    assert!(!problems.0.is_empty());
    let lines = text.lines().count() as u64 + 1;
    for p in &problems.0 {
        assert_eq!(p.origin, origin, "{p}");
        assert!(!p.field.is_empty() && !p.message.is_empty(), "{p}");
        assert!(p.line <= lines, "{p} is past the end of\n{text}");
        assert!(p.to_string().starts_with(&origin.display().to_string()));
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn config_files_never_panic_and_every_problem_is_located(edits in edits(), whole in arbitrary_text(), pick in any::<bool>()) {
        let origin = Path::new("/nonexistent/poolwatch.yaml");
        let text = if pick { mutate(CONFIG, &edits) } else { whole };
        if let Err(problems) = Config::from_yaml(origin, &text, &no_env) {
            assert_located(&problems, origin, &text);
        }
    }

    #[test]
    fn rule_files_never_panic_and_every_problem_is_located(edits in edits(), whole in arbitrary_text(), pick in any::<bool>()) {
        let origin = Path::new("/nonexistent/rules.yaml");
        let text = if pick { mutate(RULES, &edits) } else { whole };
        if let Err(problems) = parse_file(origin, &text) {
            assert_located(&problems, origin, &text);
        }
    }

    #[test]
    fn web_configs_never_panic_nor_show_a_hash(edits in edits(), whole in arbitrary_text(), pick in any::<bool>()) {
        let origin = Path::new("/nonexistent/web.yml");
        let text = if pick { mutate(WEB, &edits) } else { whole };
        if let Err(problems) = WebConfig::from_yaml(origin, &text) {
            assert_located(&problems, origin, &text);
            prop_assert!(!problems.to_string().contains(WEB_HASH), "{problems}");
        }
    }

    #[test]
    fn connection_strings_never_panic_nor_echo_the_password(
        user in "[a-z%'\\ ]{0,6}",
        host in "[a-z0-9.:\\[\\]%]{0,12}",
        port in "[0-9a-z]{0,6}",
        params in prop::collection::vec((prop::sample::select(vec!["sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "application_name", "hostaddr", "port", "bogus", ""]), "[a-z0-9=&%' \\\\/.-]{0,12}"), 0..4),
        url in any::<bool>(),
    ) {
        let password = "Pw-7Zq9-secret";
        // What the strings may get wrong is anything but the credentials' own quoting: a user
        // written with an unencoded `@` moves the password into the host, in libpq as here.
        let dsn = if url {
            let user = percent_encoding::utf8_percent_encode(&user, percent_encoding::NON_ALPHANUMERIC);
            let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("postgres://{user}:{password}@{host}:{port}/db?{}", query.join("&"))
        } else {
            let quoted = user.replace('\\', "\\\\").replace('\'', "\\'");
            let pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("user='{quoted}' password={password} host={host} port={port} {}", pairs.join(" "))
        };
        match Connection::parse(&dsn) {
            Ok(c) => {
                let shown = format!("{c} {c:?} {}", c.endpoint());
                prop_assert!(!shown.contains(password));
                if let Err(e) = c.tls().check() {
                    prop_assert!(!e.to_string().contains(password));
                }
            }
            Err(e) => {
                prop_assert!(!e.is_empty());
                prop_assert!(!e.contains(password), "{e}");
            }
        }
    }

    #[test]
    fn pgbouncer_rows_of_any_shape_map_or_fail_as_protocol(
        pools in rows(&["database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "maxwait", "maxwait_us", "pool_mode"]),
        stats in rows(&["database", "total_xact_count", "total_server_assignment_count", "total_xact_time", "total_wait_time"]),
        databases in rows(&["name", "database", "pool_size", "reserve_pool", "reserve_pool_size", "server_lifetime"]),
        config in rows(&["key", "value"]),
        servers in rows(&["database", "user", "ptr", "link", "connect_time", "remote_pid"]),
    ) {
        let show = pgbouncer::Show { config, databases, pools, stats, servers };
        let mut churn = ChurnTracker::default();
        for _ in 0..2 {
            match pgbouncer::map(&show, &mut churn) {
                Ok(sample) => check_pools(&sample)?,
                Err(e) => prop_assert_eq!(e.kind, ErrorKind::Protocol, "{}", e),
            }
        }
    }

    #[test]
    fn postgres_rows_of_any_shape_map_or_fail_as_protocol(
        activity in rows(&["pid", "datname", "usename", "application_name", "state", "wait_event_type", "age_seconds", "state_seconds", "is_self"]),
        settings in rows(&["max_connections", "superuser_reserved_connections"]),
        key in prop::sample::select(vec![PoolKey::Database, PoolKey::User, PoolKey::ApplicationName]),
    ) {
        let mut churn = ChurnTracker::default();
        match postgres::map(&activity, &settings, key, &mut churn) {
            Ok(sample) => check_pools(&sample)?,
            Err(e) => prop_assert_eq!(e.kind, ErrorKind::Protocol, "{}", e),
        }
    }
}

/// Rows with some of `known` columns (and an unknown one) and values of every kind: counts,
/// negative and huge numbers, NaN, text.
fn rows(known: &'static [&'static str]) -> impl Strategy<Value = Rows> {
    let value = prop::sample::select(vec![
        "0",
        "1",
        "5",
        "-3",
        "2.5",
        "1e308",
        "-1e308",
        "NaN",
        "inf",
        "",
        "t",
        "f",
        "idle",
        "active",
        "idle in transaction",
        "mdm_demo",
        "pgbouncer",
        "Lock",
        "session",
        "x",
    ]);
    let columns = prop::sample::subsequence(known.to_vec(), 0..=known.len());
    (columns, any::<bool>()).prop_flat_map(move |(mut columns, extra)| {
        if extra {
            columns.push("brand_new_column");
        }
        let width = columns.len();
        prop::collection::vec(prop::collection::vec(value.clone(), width), 0..6).prop_map(
            move |cells| {
                let rows: Vec<&[&str]> = cells.iter().map(Vec::as_slice).collect();
                Rows::new(&columns, &rows)
            },
        )
    })
}

/// What a mapped sample may never hold: a figure that is not a number.
fn check_pools(sample: &poolwatch::model::TargetSample) -> Result<(), TestCaseError> {
    for pool in &sample.pools {
        let seconds = [
            pool.oldest_wait_seconds,
            pool.oldest_connection_age_seconds,
            pool.oldest_idle_in_transaction_seconds,
            pool.limits.timeout_seconds,
            pool.limits.recycle_seconds,
        ];
        prop_assert!(seconds.iter().flatten().all(|s| s.is_finite()), "{pool:?}");
    }
    Ok(())
}
