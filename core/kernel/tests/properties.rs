//! Property tests of the kernel's parsers of outside input other than the envelope (whose
//! properties sit with its other tests in `src/envelope/tests.rs`): the configuration file,
//! its environment overrides, and the PostgreSQL connection URLs they carry.
//!
//! Never a panic, whatever the text; every valid configuration and URL reads back as written.

#[path = "support/inputs.rs"]
mod inputs;

use std::path::{Path, PathBuf};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use proptest::prelude::*;
use ransomeye_kernel::config::{
    Archive, Backup, Bus, Config, ConfigError, Database, Keys, Services, Trust, ENV_DATABASE_URL,
    ENV_NATS_URL,
};
use ransomeye_kernel::conn_url::{redact_url, PgUrl};
use ransomeye_kernel::keys::public_key_id;

const PATH: &str = "/etc/ransomeye/kernel.toml";

/// A table or column name the configuration accepts.
fn identifier() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,20}"
}

/// A PostgreSQL URL and the password and database it carries.
#[derive(Debug, Clone)]
struct GeneratedUrl {
    url: String,
    password: Option<String>,
    database: String,
}

fn pg_url() -> impl Strategy<Value = GeneratedUrl> {
    (
        prop_oneof![Just("postgres"), Just("postgresql")],
        "[a-z][a-z0-9_]{0,8}",
        // Non-empty: an empty password is no password, in URLs as in libpq.
        proptest::option::of((any::<char>(), any::<String>()).prop_map(|(c, s)| format!("{c}{s}"))),
        any::<bool>(),
        prop_oneof![Just("127.0.0.1"), Just("localhost"), Just("db.example.net")],
        1u16..,
        "[a-z_][a-z0-9_]{0,12}",
        proptest::option::of(prop_oneof![
            Just("sslmode=disable"),
            Just("application_name=x")
        ]),
    )
        .prop_map(
            |(scheme, user, password, in_query, host, port, database, param)| {
                let encoded = password
                    .as_deref()
                    .map(|p| utf8_percent_encode(p, NON_ALPHANUMERIC).to_string());
                let mut query: Vec<String> = param.into_iter().map(str::to_string).collect();
                let userinfo = match &encoded {
                    Some(p) if in_query => {
                        query.push(format!("password={p}"));
                        user
                    }
                    Some(p) => format!("{user}:{p}"),
                    None => user,
                };
                let mut url = format!("{scheme}://{userinfo}@{host}:{port}/{database}");
                if !query.is_empty() {
                    url = format!("{url}?{}", query.join("&"));
                }
                GeneratedUrl {
                    url,
                    password,
                    database,
                }
            },
        )
}

/// TOML integers are signed 64-bit: the largest unsigned value a configuration can hold.
const TOML_MAX: u64 = i64::MAX as u64;

fn path() -> impl Strategy<Value = PathBuf> {
    any::<String>().prop_map(PathBuf::from)
}

/// Any configuration [`Config::parse`] accepts.
fn valid_config() -> impl Strategy<Value = Config> {
    let database = (pg_url(), 1u32.., 1u32..).prop_map(|(url, connect, answer)| Database {
        url: url.url,
        connect_timeout_secs: connect,
        answer_timeout_secs: answer,
    });
    let archive = (
        path(),
        (identifier(), proptest::option::of(identifier())),
        identifier(),
        1u32..,
        (any::<u32>(), 0u32..=1000),
    )
        .prop_map(
            |(dir, (schema, table), time_column, retention_days, (slice, rest))| Archive {
                dir,
                table: match table {
                    Some(t) => format!("{schema}.{t}"),
                    None => schema,
                },
                time_column,
                retention_days,
                prune_slice_ms: slice,
                prune_rest_percent: rest,
            },
        );
    let backup = (
        path(),
        1u32..,
        proptest::collection::vec(path(), 0..3),
        proptest::option::of(path()),
        1i32..=19,
        proptest::option::of(path()),
    )
        .prop_map(
            |(dir, keep, include, artifacts_dir, zstd_level, pg_bin_dir)| Backup {
                dir,
                keep,
                include,
                artifacts_dir,
                zstd_level,
                pg_bin_dir,
            },
        );
    let services = (
        proptest::collection::vec(any::<String>(), 0..3),
        proptest::collection::vec(any::<String>(), 0..3),
        1..=TOML_MAX,
    )
        .prop_map(|(stop, start, timeout_secs)| Services {
            stop,
            start,
            timeout_secs,
        });
    let trust = (1..=TOML_MAX, any::<[u8; 32]>()).prop_map(|(version, public_key)| Trust {
        version,
        key_id: public_key_id(&public_key).to_string(),
        public_key: hex::encode(public_key),
    });
    (
        database,
        any::<String>().prop_map(|rest| format!("nats://{rest}")),
        path(),
        archive,
        backup,
        services,
        trust,
    )
        .prop_map(
            |(database, bus_url, keys_dir, archive, backup, services, trust)| Config {
                database,
                bus: Bus::new(bus_url),
                keys: Keys { dir: keys_dir },
                archive,
                backup,
                services,
                logs: Default::default(),
                clean: Default::default(),
                trust,
                alerts: Default::default(),
                credentials: Vec::new(),
            },
        )
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new(PATH), text)
}

fn valid_text() -> impl Strategy<Value = String> {
    valid_config().prop_map(|c| {
        c.to_toml(Path::new(PATH))
            .expect("a valid config serialises")
    })
}

proptest! {
    #![proptest_config(inputs::config())]

    #[test]
    fn valid_configurations_round_trip(config in valid_config()) {
        let text = config.to_toml(Path::new(PATH));
        prop_assert!(text.is_ok(), "{:?}", text);
        prop_assert_eq!(parse(&text.expect("checked"))?, config);
    }

    #[test]
    fn any_text_parses_or_is_refused_with_a_location_inside_it(text in inputs::hostile_text(valid_text())) {
        match parse(&text) {
            Ok(config) => {
                // What was accepted is a configuration this version would also write.
                prop_assert!(config.to_toml(Path::new(PATH)).is_ok());
            }
            Err(ConfigError::Invalid { path, location, message }) => {
                prop_assert_eq!(path, PathBuf::from(PATH));
                prop_assert!(!message.is_empty());
                if let Some(l) = location {
                    prop_assert!(l.line >= 1 && l.line <= text.lines().count() + 1, "{:?}", l);
                    prop_assert!(l.column >= 1);
                }
            }
            Err(other) => prop_assert!(false, "parse gave a non-parse error: {}", other),
        }
    }

    #[test]
    fn env_overrides_replace_exactly_the_urls(
        config in valid_config(),
        env in proptest::collection::btree_map(
            prop_oneof![
                Just(ENV_DATABASE_URL.to_string()),
                Just(ENV_NATS_URL.to_string()),
                "[A-Z_]{1,20}",
            ],
            prop_oneof![any::<String>(), pg_url().prop_map(|u| u.url)],
            0..4,
        ),
    ) {
        let overridden = config.clone().with_env_overrides(|k| env.get(k).cloned());
        let expect = |key: &str, from_file: &str| {
            env.get(key).filter(|v| !v.is_empty()).cloned().unwrap_or_else(|| from_file.to_string())
        };
        prop_assert_eq!(&overridden.database.url, &expect(ENV_DATABASE_URL, &config.database.url));
        prop_assert_eq!(&overridden.bus.url, &expect(ENV_NATS_URL, &config.bus.url));
        let mut rest = overridden.clone();
        rest.database.url = config.database.url.clone();
        rest.bus.url = config.bus.url.clone();
        prop_assert_eq!(rest, config);
        // The override is outside input too: it reaches the URL parser unchecked.
        let _ = PgUrl::parse(&overridden.database.url).map(|u| u.redacted());
    }

    #[test]
    fn any_url_text_parses_or_is_refused_and_never_shows_a_password(
        text in inputs::hostile_text(pg_url().prop_map(|u| u.url)),
    ) {
        let _ = redact_url(&text);
        if let Ok(url) = PgUrl::parse(&text) {
            let shown = PgUrl::parse(url.without_password()).expect("the shown URL parses");
            prop_assert_eq!(shown.password(), None);
            let _ = (url.redacted(), url.database());
        }
    }

    #[test]
    fn generated_urls_give_back_their_password_and_database(u in pg_url()) {
        let url = PgUrl::parse(&u.url).expect("generated URLs are valid");
        prop_assert_eq!(url.password(), u.password.as_deref());
        prop_assert_eq!(url.database(), Some(u.database.clone()));
        let shown = PgUrl::parse(url.without_password()).expect("the shown URL parses");
        prop_assert_eq!(shown.password(), None);
        // The redacted form says that there was a password, never what it was.
        prop_assert_eq!(url.redacted().contains("***"), u.password.is_some());
    }
}

/// Every file the loader may be handed: arbitrary bytes (not UTF-8, NUL, …) through
/// [`Config::load`], never a panic.
#[test]
fn arbitrary_files_load_or_are_refused() {
    use ransomeye_kernel::config::ConfigSource;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kernel.toml");
    let mut runner = proptest::test_runner::TestRunner::new(inputs::config());
    runner
        .run(
            &inputs::hostile_bytes(valid_text().prop_map(String::into_bytes)),
            |bytes| {
                std::fs::write(&path, &bytes).expect("write");
                let source = ConfigSource {
                    path: path.clone(),
                    origin: "--config",
                };
                let loaded = Config::load(&source);
                prop_assert_eq!(
                    loaded.is_ok(),
                    std::str::from_utf8(&bytes).is_ok_and(|t| parse(t).is_ok())
                );
                Ok(())
            },
        )
        .expect("property holds");
}
