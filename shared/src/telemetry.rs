//! Logging: JSON in Lambda, readable lines in a terminal, and never a secret in either.
//!
//! Secrets are held in `secrecy::SecretString` so they cannot be formatted by accident; as a second
//! line of defence every log line passes through [`redact`] before it is written.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::OnceLock;

use regex_lite::Regex;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::env::Env;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Lambda's advanced logging controls set `AWS_LAMBDA_LOG_FORMAT` (`JSON`/`Text`) and
/// `AWS_LAMBDA_LOG_LEVEL`; without them, JSON inside Lambda and text in a terminal.
pub fn log_format(env: &Env) -> LogFormat {
    match env
        .optional("AWS_LAMBDA_LOG_FORMAT")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("json") => LogFormat::Json,
        Some("text") => LogFormat::Text,
        _ if env.optional("AWS_LAMBDA_FUNCTION_NAME").is_some() => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

/// The filter directive: `AWS_LAMBDA_LOG_LEVEL` (FATAL maps to error), else `RUST_LOG`, else info.
pub fn log_filter(env: &Env) -> String {
    if let Some(level) = env.optional("AWS_LAMBDA_LOG_LEVEL") {
        return match level.to_ascii_lowercase().as_str() {
            "fatal" => "error".to_owned(),
            other => other.to_owned(),
        };
    }
    env.optional("RUST_LOG").unwrap_or("info").to_owned()
}

/// Installs the global subscriber once per process. Logs go to stderr in a terminal (stdout
/// stays for the command's own output) and to stdout in Lambda.
pub fn init(env: &Env) {
    let filter = EnvFilter::try_new(log_filter(env)).unwrap_or_else(|_| EnvFilter::new("info"));
    let in_lambda = env.optional("AWS_LAMBDA_RUNTIME_API").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match (log_format(env), in_lambda) {
        (LogFormat::Json, true) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(Redacting(io::stdout))
            .try_init(),
        (LogFormat::Json, false) => builder
            .json()
            .flatten_event(true)
            .with_writer(Redacting(io::stderr))
            .try_init(),
        (LogFormat::Text, true) => builder
            .with_ansi(false)
            .with_writer(Redacting(io::stdout))
            .try_init(),
        (LogFormat::Text, false) => builder.with_writer(Redacting(io::stderr)).try_init(),
    };
    // A second init (tests, the CLI calling several guard rails) keeps the first subscriber.
    let _ = result;
}

/// One masking rule: a regex and its replacement, and the literals a line must contain for the
/// regex to match at all.
struct Rule {
    pattern: &'static str,
    replacement: &'static str,
    /// The line (ASCII-lowercased where `case_insensitive`) must contain one of these.
    any_of: &'static [&'static str],
    /// ... and, where given, this one too.
    and: Option<&'static str>,
    case_insensitive: bool,
    compiled: OnceLock<Regex>,
}

impl Rule {
    /// Whether the regex could match: a cheap literal check, so the regex (compiled on first
    /// need, run by a backtracking-free but slow engine) is skipped for the ordinary line.
    fn may_match(&self, line: &str, lowered: &str) -> bool {
        if self.case_insensitive && !line.is_ascii() {
            // Unicode case folding could spell a keyword with non-ASCII letters: ask the regex.
            return true;
        }
        let text = if self.case_insensitive { lowered } else { line };
        self.any_of.iter().any(|l| text.contains(l)) && self.and.is_none_or(|l| text.contains(l))
    }

    fn regex(&self) -> &Regex {
        self.compiled
            .get_or_init(|| Regex::new(self.pattern).expect("redaction patterns are valid"))
    }
}

const fn rule(
    pattern: &'static str,
    replacement: &'static str,
    any_of: &'static [&'static str],
    and: Option<&'static str>,
    case_insensitive: bool,
) -> Rule {
    Rule {
        pattern,
        replacement,
        any_of,
        and,
        case_insensitive,
        compiled: OnceLock::new(),
    }
}

static RULES: [Rule; 4] = [
    rule(
        r"(https://hooks\.slack\.com/)[^\s\x22'\\]+",
        "${1}[redacted]",
        &["https://hooks.slack.com/"],
        None,
        false,
    ),
    rule(
        r"(https://[^\s\x22'/]*/(?:services|workflows|triggers)/)[A-Za-z0-9/_-]{16,}",
        "${1}[redacted]",
        &["/services/", "/workflows/", "/triggers/"],
        Some("https://"),
        false,
    ),
    rule(
        r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/\s\x22'@]+:)[^@\s\x22']+@",
        "${1}[redacted]@",
        &["://"],
        Some("@"),
        false,
    ),
    rule(
        // Not after a colon: `…:secret:name` is an ARN's resource type, and an ARN is not a
        // secret (an error must still say which secret it could not read).
        r#"(?i)((?:^|[^:])(?:password|passwd|secret|token|authorization|api[_-]?key|webhook[_-]?url)\\?\x22?\s*[:=]\s*\\?\x22?)[^\s\x22\\,}&]+"#,
        "${1}[redacted]",
        &[
            "password",
            "passwd",
            "secret",
            "token",
            "authorization",
            "apikey",
            "api_key",
            "api-key",
            "webhookurl",
            "webhook_url",
            "webhook-url",
        ],
        None,
        true,
    ),
];

/// Masks what looks like a secret: Slack webhook paths, passwords in connection URLs, and the
/// values of keys named like secrets (`password`, `token`, `secret`, `webhook_url`, …).
pub fn redact(line: &str) -> Cow<'_, str> {
    let lowered = line.to_ascii_lowercase();
    let mut out = Cow::Borrowed(line);
    for rule in &RULES {
        // Replacements only insert `[redacted]`, which holds none of the literals, so checking
        // them on the original line never skips a rule that could match `out`.
        if rule.may_match(line, &lowered) {
            let regex = rule.regex();
            if regex.is_match(&out) {
                out = Cow::Owned(regex.replace_all(&out, rule.replacement).into_owned());
            }
        }
    }
    out
}

/// Text that leaves safeship for people (guard events, answers, Slack, email), which no log
/// redaction covers: every `http://` / `https://` URL loses what may be a credential — the
/// userinfo (`user:password@` → `***@`), every query *value* (`?token=abc&v=1` →
/// `?token=***&v=***`) and the fragment (`#***`); all query values, not only those of
/// secret-looking keys, because a token travels under any name (`sig`, `code`,
/// `X-Amz-Signature`, `k`), while the keys stay so a reader still sees which URL it was. Then
/// [`redact`] masks secret-looking keys' values, Slack webhook paths and URL passwords anywhere.
#[must_use]
pub fn scrub(text: &str) -> String {
    let urls = redact_urls(text);
    redact(&urls).into_owned()
}

/// Every `http://` / `https://` URL in `text`, redacted by [`redact_url`]. A URL ends at
/// whitespace, a quote, `<`, `>`, `(`, `)` or `\`; trailing `.,;:` are not part of it.
fn redact_urls(text: &str) -> String {
    let lowered = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    while let Some(found) = next_url(&lowered, rest) {
        let end = found
            + text[found..]
                .find(|c: char| c.is_whitespace() || "\"'<>()\\".contains(c))
                .unwrap_or(text.len() - found);
        let url = text[found..end].trim_end_matches(['.', ',', ';', ':']);
        out.push_str(&text[rest..found]);
        out.push_str(&redact_url(url));
        rest = found + url.len();
    }
    out.push_str(&text[rest..]);
    out
}

fn next_url(lowered: &str, from: usize) -> Option<usize> {
    let tail = &lowered[from..];
    [tail.find("http://"), tail.find("https://")]
        .into_iter()
        .flatten()
        .min()
        .map(|i| from + i)
}

/// One URL without its userinfo, query values and fragment (see the module).
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, after)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(authority_end);
    let host = match authority.rfind('@') {
        Some(at) => format!("***@{}", &authority[at + 1..]),
        None => authority.to_owned(),
    };
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (rest, None),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (before_fragment, None),
    };
    let mut out = format!("{scheme}://{host}{path}");
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, "")) => format!("{key}="),
                Some((key, _)) => format!("{key}=***"),
                None if pair.is_empty() => String::new(),
                None => "***".to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        if !fragment.is_empty() {
            out.push_str("***");
        }
    }
    out
}

/// A `MakeWriter` whose writers pass every line through [`redact`]. The fmt layer writes each
/// event in one `write` call, so a line is never split across two redactions.
#[derive(Clone, Copy)]
pub struct Redacting<F>(pub F);

impl<'a, F, W> MakeWriter<'a> for Redacting<F>
where
    F: Fn() -> W + 'static,
    W: Write,
{
    type Writer = RedactingWriter<W>;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter((self.0)())
    }
}

pub struct RedactingWriter<W>(pub W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_webhook_paths_are_masked() {
        let line = r#"{"msg":"posting","url":"https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"}"#;
        let out = redact(line);
        assert!(!out.contains("T000/B000"), "{out}");
        assert!(out.contains("https://hooks.slack.com/[redacted]"), "{out}");
    }

    #[test]
    fn passwords_in_urls_and_fields_are_masked() {
        let out = redact("connecting to postgres://app:s3cr3t-pw@db.internal:5432/app");
        assert_eq!(
            out,
            "connecting to postgres://app:[redacted]@db.internal:5432/app"
        );
        let out = redact(r#"{"username":"app","password":"hunter2","port":5432}"#);
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("\"username\":\"app\""), "{out}");
        let out = redact("token=abc.def.ghi next");
        assert_eq!(out, "token=[redacted] next");
        // JSON logs escape inner quotes: {"error":"... \"password\":\"x\" ..."}
        let out = redact(r#"{"error":"bad secret {\"password\":\"hunter2\"}"}"#);
        assert!(!out.contains("hunter2"), "{out}");
    }

    #[test]
    fn a_secret_arn_is_not_a_secret() {
        let line = "secretsmanager:GetSecretValue on arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/slack-AbCdEf failed";
        assert_eq!(redact(line), line);
        // ... while a value after a secret-named key still is.
        assert_eq!(redact("db_password=hunter2 x"), "db_password=[redacted] x");
        assert_eq!(redact("secret: hunter2"), "secret: [redacted]");
    }

    /// The literal pre-check only skips work: every line comes out as all four regexes make it.
    #[test]
    fn the_literal_precheck_never_changes_the_result() {
        let unfiltered = |line: &str| {
            let mut out = line.to_owned();
            for rule in &RULES {
                out = rule
                    .regex()
                    .replace_all(&out, rule.replacement)
                    .into_owned();
            }
            out
        };
        let lines = [
            "stop-deployment d-ABCDEF123 for alarm checkout-prod-5xx-rate",
            r#"{"level":"INFO","fields":{"message":"hook reported","status":"Succeeded"}}"#,
            "posting to https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX now",
            "posting to https://example.com/workflows/abcdefghijklmnopqrstuvwx",
            "posting to https://example.com/triggers/short",
            "postgres://app:pw@db:5432/app and mailto:someone@example.com",
            "user@host without a scheme",
            "PassWord=hunter2 Authorization: Bearer abc.def API-KEY=1 Webhook_URL=x",
            r#"{"Token":"abc","ApiKey":"def","WEBHOOKURL":"ghi","passwd":"jkl"}"#,
            "paſſword=hunter2 ſecret=x toKen=y",
            "the secret word is not followed by a value",
            "ünïcödé line with token = value",
        ];
        for line in lines {
            assert_eq!(redact(line), unfiltered(line), "{line}");
        }
    }

    #[test]
    fn ordinary_lines_are_untouched() {
        let line = "stop-deployment d-ABCDEF123 for alarm checkout-prod-5xx-rate";
        assert!(matches!(redact(line), Cow::Borrowed(_)));
    }

    #[test]
    fn format_and_level_follow_lambda_controls() {
        let lambda = Env::from_pairs([("AWS_LAMBDA_FUNCTION_NAME", "f")]);
        assert_eq!(log_format(&lambda), LogFormat::Json);
        let text = Env::from_pairs([
            ("AWS_LAMBDA_FUNCTION_NAME", "f"),
            ("AWS_LAMBDA_LOG_FORMAT", "Text"),
        ]);
        assert_eq!(log_format(&text), LogFormat::Text);
        assert_eq!(
            log_format(&Env::from_pairs::<&str, &str>([])),
            LogFormat::Text
        );
        assert_eq!(
            log_filter(&Env::from_pairs([("AWS_LAMBDA_LOG_LEVEL", "FATAL")])),
            "error"
        );
        assert_eq!(
            log_filter(&Env::from_pairs([("RUST_LOG", "debug")])),
            "debug"
        );
    }

    #[test]
    fn writer_redacts_what_passes_through() {
        let mut w = RedactingWriter(Vec::new());
        w.write_all(b"webhook_url=https://hooks.slack.com/services/T1/B2/abcdefabcdefabcdef\n")
            .unwrap();
        let out = String::from_utf8(w.0).unwrap();
        assert!(!out.contains("abcdef"), "{out}");
    }
}

#[cfg(test)]
mod scrub_tests {
    use super::*;

    #[test]
    fn userinfo_query_values_and_fragments_are_masked() {
        assert_eq!(
            redact_url("https://svc:pa55w0rd@api.internal:8443/health?token=s3cr3t&v=4#frag"),
            "https://***@api.internal:8443/health?token=***&v=***#***"
        );
        assert_eq!(
            redact_url("http://user@h/x?AKIAEXAMPLE&empty="),
            "http://***@h/x?***&empty="
        );
    }

    #[test]
    fn a_url_without_secrets_is_unchanged() {
        for url in [
            "http://127.0.0.1:8080/health",
            "https://api.example.com",
            "https://api.example.com/a/b/",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn urls_inside_messages_are_found_and_the_rest_is_kept() {
        let text = "request 1 to https://u:p@h.internal/health?sig=abc failed: error sending request for url (https://u:p@h.internal/health?sig=abc).";
        assert_eq!(
            scrub(text),
            "request 1 to https://***@h.internal/health?sig=*** failed: error sending request for url (https://***@h.internal/health?sig=***)."
        );
        assert_eq!(
            scrub("GET HTTP://h/x?code=123 answered 500"),
            "GET HTTP://h/x?code=*** answered 500"
        );
    }

    #[test]
    fn secret_looking_keys_in_snippets_are_masked_too() {
        let out = scrub(r#"body is not JSON: "access_token=eyJhbGciOi.x.y; password: hunter2""#);
        assert!(!out.contains("eyJhbGciOi"), "{out}");
        assert!(!out.contains("hunter2"), "{out}");
        let out =
            scrub("GET https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX answered 404");
        assert!(!out.contains("XXXXXXXXXXXXXXXX"), "{out}");
    }
}
