//! Label selectors as `kubectl -l` takes them, checked before anything reaches the API server:
//! an empty selector would pick every pod of the namespace, and a misspelt one is better refused
//! here, naming the bad part, than by the server.

/// Why a label selector was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error(
        "an empty label selector would pick every pod of the namespace: name the pods (-l app=web)"
    )]
    Empty,
    #[error(
        "invalid label selector requirement '{0}': expected KEY, !KEY, KEY=VALUE, KEY!=VALUE, KEY in (V1,V2) or KEY notin (V1,V2)"
    )]
    Requirement(String),
    #[error(
        "the label selector '{0}' only excludes pods, so it picks nearly every pod of the namespace: add a requirement that names them (app=web, tier in (a,b), or a KEY they carry)"
    )]
    OnlyExclusions(String),
    #[error(
        "invalid label key '{0}': a name of at most 63 letters, digits, '-', '_' and '.' that starts and ends with a letter or digit, optionally after a DNS prefix and '/'"
    )]
    Key(String),
    #[error(
        "invalid label value '{0}': at most 63 letters, digits, '-', '_' and '.' that start and end with a letter or digit"
    )]
    Value(String),
}

/// Checks `selector` (`app=web,tier in (a,b),!canary`) and returns it with the spaces around
/// its requirements taken out, as it is sent to the API server.
pub fn check(selector: &str) -> Result<String, SelectorError> {
    let mut requirements = Vec::new();
    let mut names_pods = false;
    for requirement in split_top_level(selector) {
        let requirement = requirement.trim();
        if requirement.is_empty() {
            continue;
        }
        names_pods |= check_requirement(requirement)?;
        requirements.push(requirement);
    }
    if requirements.is_empty() {
        return Err(SelectorError::Empty);
    }
    if !names_pods {
        return Err(SelectorError::OnlyExclusions(selector.trim().to_owned()));
    }
    Ok(requirements.join(","))
}

/// The requirements of a selector: split at commas outside parentheses.
fn split_top_level(selector: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&selector[start..]);
    parts
}

/// Checks one requirement; whether it names pods (`KEY`, `KEY=V`, `KEY in (…)`) rather than
/// excluding some (`!KEY`, `KEY!=V`, `KEY notin (…)`).
fn check_requirement(requirement: &str) -> Result<bool, SelectorError> {
    let bad = || SelectorError::Requirement(requirement.to_owned());
    if let Some(key) = requirement.strip_prefix('!') {
        return check_key(key.trim()).map(|()| false);
    }
    for (op, names) in [("!=", false), ("==", true), ("=", true)] {
        if let Some((key, value)) = requirement.split_once(op) {
            check_key(key.trim())?;
            return check_value(value.trim()).map(|()| names);
        }
    }
    let words: Vec<&str> = requirement.splitn(2, char::is_whitespace).collect();
    match words.as_slice() {
        [key] => check_key(key).map(|()| true),
        [key, rest] => {
            let rest = rest.trim_start();
            let (set, names) = match rest.strip_prefix("notin") {
                Some(set) => (set, false),
                None => (rest.strip_prefix("in").ok_or_else(bad)?, true),
            };
            let set = set
                .trim()
                .strip_prefix('(')
                .and_then(|set| set.strip_suffix(')'))
                .filter(|set| !set.trim().is_empty())
                .ok_or_else(bad)?;
            check_key(key)?;
            for value in set.split(',') {
                check_value(value.trim())?;
            }
            Ok(names)
        }
        _ => Err(bad()),
    }
}

/// `[PREFIX/]NAME`: PREFIX a DNS subdomain of at most 253 characters, NAME as a value but not
/// empty.
fn check_key(key: &str) -> Result<(), SelectorError> {
    let bad = || SelectorError::Key(key.to_owned());
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if name.is_empty() || !is_label_value(name) {
        return Err(bad());
    }
    if let Some(prefix) = prefix {
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if prefix.len() > 253 || !prefix.split('.').all(label_ok) {
            return Err(bad());
        }
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), SelectorError> {
    if value.is_empty() || is_label_value(value) {
        Ok(())
    } else {
        Err(SelectorError::Value(value.to_owned()))
    }
}

/// A non-empty label value: at most 63 of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
fn is_label_value(value: &str) -> bool {
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && ends(value.chars().next())
        && ends(value.chars().last())
}

/// Whether `name` is a DNS label (RFC 1123), as namespaces' names are.
pub fn is_dns_label(name: &str) -> bool {
    name.len() <= 63 && is_dns_part(name)
}

/// Whether `name` is a DNS subdomain as Kubernetes checks pods' names: at most 253 characters,
/// dot-separated parts of any length.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_part)
}

/// Lower-case letters, digits and '-', not first or last, not empty.
fn is_dns_part(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !part.starts_with('-')
        && !part.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_the_api_server_checks_them() {
        let long_part = "a".repeat(70);
        for (name, label, subdomain) in [
            ("web-0", true, true),
            ("web-7d9c.x2x4q", false, true),
            (long_part.as_str(), false, true),
            ("Web", false, false),
            ("-web", false, false),
            ("web-", false, false),
            ("web..0", false, false),
            ("", false, false),
            ("web_0", false, false),
        ] {
            assert_eq!(is_dns_label(name), label, "{name}");
            assert_eq!(is_dns_subdomain(name), subdomain, "{name}");
        }
        assert!(!is_dns_subdomain(&"a".repeat(254)));
    }

    #[test]
    fn accepts_what_kubectl_accepts() {
        for (selector, sent) in [
            ("app=web", "app=web"),
            (" app = web , tier!=db ", "app = web,tier!=db"),
            ("app==web", "app==web"),
            ("app.kubernetes.io/name=web", "app.kubernetes.io/name=web"),
            ("tier in (web, api),!canary", "tier in (web, api),!canary"),
            ("app=web,tier notin (db)", "app=web,tier notin (db)"),
            ("release", "release"),
            ("release,!canary", "release,!canary"),
            ("app=", "app="),
        ] {
            assert_eq!(check(selector).as_deref(), Ok(sent), "{selector}");
        }
    }

    #[test]
    fn refuses_empty_and_invalid_selectors() {
        for (selector, error) in [
            ("", SelectorError::Empty),
            (" , ", SelectorError::Empty),
            ("app=web!", SelectorError::Value("web!".into())),
            ("-app=web", SelectorError::Key("-app".into())),
            (
                "Bad_Prefix/app=web",
                SelectorError::Key("Bad_Prefix/app".into()),
            ),
            (
                "tier in web",
                SelectorError::Requirement("tier in web".into()),
            ),
            (
                "tier within (a)",
                SelectorError::Requirement("tier within (a)".into()),
            ),
            ("app=web x", SelectorError::Value("web x".into())),
            (
                "tier in ()",
                SelectorError::Requirement("tier in ()".into()),
            ),
            ("!canary", SelectorError::OnlyExclusions("!canary".into())),
            (
                "app!=db, tier notin (a)",
                SelectorError::OnlyExclusions("app!=db, tier notin (a)".into()),
            ),
        ] {
            assert_eq!(check(selector), Err(error), "{selector}");
        }
    }
}
