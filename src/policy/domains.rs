//! Label-boundary suffix matching of host names.
//!
//! A domain entry covers itself and every subdomain: `facebook.com` matches
//! `m.facebook.com`, never `notfacebook.com`. The table is built once from
//! the compiled policy and then only queried; a lookup costs one hash probe
//! per label of the host, whatever the number of entries. The most specific
//! (longest) entry wins, so `connect.facebook.net` can be classed apart from
//! `facebook.net`.

use std::collections::HashMap;

/// Domain -> value, queried by host name.
#[derive(Debug, Clone)]
pub struct DomainTable<V> {
    entries: HashMap<Box<str>, V>,
}

impl<V> Default for DomainTable<V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<V> DomainTable<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a normalised domain. Returns the previous value for that exact
    /// domain, if any, so the compiler can report duplicates.
    pub fn insert(&mut self, domain: &str, value: V) -> Option<V> {
        self.entries.insert(domain.into(), value)
    }

    pub fn get_exact(&self, domain: &str) -> Option<&V> {
        self.entries.get(domain)
    }

    pub fn get_exact_mut(&mut self, domain: &str) -> Option<&mut V> {
        self.entries.get_mut(domain)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry covering `host`, most specific first.
    pub fn lookup_all<'s, 'h>(
        &'s self,
        host: &'h str,
    ) -> impl Iterator<Item = &'s V> + use<'s, 'h, V> {
        let mut rest = Some(host);
        std::iter::from_fn(move || loop {
            let cur = rest?;
            rest = cur.find('.').map(|i| &cur[i + 1..]);
            if let Some(v) = self.entries.get(cur) {
                return Some(v);
            }
        })
        .take(if self.entries.is_empty() {
            0
        } else {
            usize::MAX
        })
    }

    /// The most specific entry covering `host` (a normalised name), with the
    /// domain that matched.
    pub fn lookup<'h>(&self, host: &'h str) -> Option<(&'h str, &V)> {
        if self.entries.is_empty() {
            return None;
        }
        let mut rest = host;
        loop {
            if let Some(v) = self.entries.get(rest) {
                return Some((rest, v));
            }
            match rest.find('.') {
                Some(i) => rest = &rest[i + 1..],
                None => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_on_label_boundaries_only() {
        let mut t = DomainTable::new();
        t.insert("facebook.com", 1);
        t.insert("facebook.net", 2);
        t.insert("connect.facebook.net", 3);
        let cases = [
            ("facebook.com", Some(1)),
            ("m.facebook.com", Some(1)),
            ("a.b.c.facebook.com", Some(1)),
            ("notfacebook.com", None),
            ("facebook.com.evil.example", None),
            ("com", None),
            ("facebook.net", Some(2)),
            ("connect.facebook.net", Some(3)),
            ("x.connect.facebook.net", Some(3)),
            ("xconnect.facebook.net", Some(2)),
        ];
        for (host, want) in cases {
            assert_eq!(t.lookup(host).map(|(_, v)| *v), want, "host {host}");
        }
    }
}
