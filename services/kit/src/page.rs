//! Keyset pagination (AIP-158) with opaque page tokens. A token holds the sort key of the last
//! item returned, encrypted (HMAC-SHA256 in counter mode over a random nonce) and authenticated
//! together with a fingerprint of the query it belongs to. A token that was altered, forged or
//! made for another query (other parent, filter or caller) is INVALID_ARGUMENT.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const NONCE: usize = 12;
const TAG: usize = 16;

/// Makes and reads page tokens with the process's secret (shared by a service's replicas).
#[derive(Clone)]
pub struct PageTokens {
    key: Arc<[u8]>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(..)")
    }
}

impl PageTokens {
    /// Tokens signed and encrypted with keys derived from `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self { key: Arc::from(secret) }
    }

    fn mac(&self, label: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key).expect("hmac takes keys of any length");
        mac.update(label);
        mac
    }

    fn keystream(&self, nonce: &[u8], len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 32);
        let mut counter: u32 = 0;
        while out.len() < len {
            let mut mac = self.mac(b"civic page token stream");
            mac.update(nonce);
            mac.update(&counter.to_be_bytes());
            out.extend_from_slice(&mac.finalize().into_bytes());
            counter += 1;
        }
        out.truncate(len);
        out
    }

    fn tag(&self, query: &str, body: &[u8]) -> Vec<u8> {
        let mut mac = self.mac(b"civic page token tag");
        mac.update(&Sha256::digest(query.as_bytes()));
        mac.update(body);
        mac.finalize().into_bytes()[..TAG].to_vec()
    }

    /// A token for the page after the item whose sort key is `position`, for `query` (a
    /// fingerprint of everything that shapes the result: method, parent, filter, order, caller).
    pub fn encode(&self, query: &str, position: &[String]) -> String {
        let plain = serde_json::to_vec(position).expect("strings serialise");
        let nonce: [u8; NONCE] = rand::random();
        let mut body = Vec::with_capacity(1 + NONCE + plain.len() + TAG);
        body.push(VERSION);
        body.extend_from_slice(&nonce);
        body.extend(plain.iter().zip(self.keystream(&nonce, plain.len())).map(|(p, k)| p ^ k));
        let tag = self.tag(query, &body);
        body.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(body)
    }

    /// The position in `token`, which must have been made by [`PageTokens::encode`] for the same
    /// `query`. An empty token is the first page (`None`).
    pub fn decode(&self, token: &str, query: &str) -> Result<Option<Vec<String>>> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || Error::invalid("page_token", "is not a token this query returned; start again without it");
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        if raw.len() < 1 + NONCE + TAG || raw[0] != VERSION {
            return Err(invalid());
        }
        let (body, tag) = raw.split_at(raw.len() - TAG);
        let mut mac = self.mac(b"civic page token tag");
        mac.update(&Sha256::digest(query.as_bytes()));
        mac.update(body);
        mac.verify_truncated_left(tag).map_err(|_| invalid())?;
        let (nonce, cipher) = body[1..].split_at(NONCE);
        let plain: Vec<u8> = cipher.iter().zip(self.keystream(nonce, cipher.len())).map(|(c, k)| c ^ k).collect();
        serde_json::from_slice(&plain).map(Some).map_err(|_| invalid())
    }
}

impl PageTokens {
    /// Like [`PageTokens::decode`], for positions of exactly `parts` values.
    pub fn decode_position(&self, token: &str, query: &str, parts: usize) -> Result<Option<Vec<String>>> {
        match self.decode(token, query)? {
            Some(p) if p.len() != parts => {
                Err(Error::invalid("page_token", "is not a token this query returned; start again without it"))
            }
            other => Ok(other),
        }
    }

    /// Ends a page read with one row more than `size` (the way to know whether more follow):
    /// drops the extra row and returns the token of the next page, or "" on the last page.
    pub fn next_page<T>(
        &self,
        query: &str,
        rows: &mut Vec<T>,
        size: usize,
        position: impl FnOnce(&T) -> Vec<String>,
    ) -> String {
        if rows.len() > size {
            rows.truncate(size);
            rows.last().map(|last| self.encode(query, &position(last))).unwrap_or_default()
        } else {
            String::new()
        }
    }
}

/// The page size to use: `requested` when in 1..=`max`, `default` for 0, `max` above it;
/// negative is INVALID_ARGUMENT (AIP-158).
pub fn page_size(requested: i32, default: usize, max: usize) -> Result<usize> {
    match requested {
        n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
        0 => Ok(default),
        n => Ok((n as usize).min(max)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn tokens() -> PageTokens {
        PageTokens::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn a_token_round_trips_and_hides_its_position() {
        let t = tokens();
        let position = vec!["2026-11-28T10:00:00.000000Z".to_owned(), "item-42".to_owned()];
        let token = t.encode("list:streets/zhongjie", &position);
        assert!(!token.contains("item"));
        let decoded = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        assert!(!String::from_utf8_lossy(&decoded).contains("item-42"));
        assert_eq!(t.decode(&token, "list:streets/zhongjie").expect("valid"), Some(position));
        assert_eq!(t.decode("", "anything").expect("first page"), None);
    }

    #[test]
    fn a_tampered_token_is_invalid_argument() {
        let t = tokens();
        let token = t.encode("q", &["a".to_owned()]);
        let mut raw = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        for i in 0..raw.len() {
            raw[i] ^= 1;
            let err = t.decode(&URL_SAFE_NO_PAD.encode(&raw), "q").expect_err("tampered byte {i}");
            assert_eq!(err.code(), Code::InvalidArgument);
            assert_eq!(err.violations()[0].field, "page_token");
            raw[i] ^= 1;
        }
        assert!(t.decode("not a token!", "q").is_err());
    }

    #[test]
    fn a_token_of_another_query_or_key_is_rejected() {
        let t = tokens();
        let token = t.encode("list:streets/a", &["x".to_owned()]);
        assert_eq!(t.decode(&token, "list:streets/b").expect_err("other query").code(), Code::InvalidArgument);
        let other = PageTokens::new(b"another secret of thirty-two bytes!!");
        assert!(other.decode(&token, "list:streets/a").is_err());
    }

    #[test]
    fn page_sizes_follow_aip_158() {
        assert_eq!(page_size(0, 50, 1000).expect("default"), 50);
        assert_eq!(page_size(5000, 50, 1000).expect("clamped"), 1000);
        assert_eq!(page_size(-1, 50, 1000).expect_err("negative").code(), Code::InvalidArgument);
    }
}
