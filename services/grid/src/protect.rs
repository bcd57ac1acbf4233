//! Residents' personal data: citizen ID numbers (GB 11643-1999) and mainland mobile numbers.
//!
//! Values are validated and normalised here ([`IdNumber`], [`Phone`]), encrypted at rest with
//! AES-256-GCM under a named key ([`Keyring::seal`], [`Keyring::open`]), found again through a
//! keyed look-up hash ([`Keyring::lookup_hash`]), and shown masked in every answer
//! ([`mask_id_number`], [`mask_phone`]).
//!
//! A value itself never appears in an error message, in `Display` or in `Debug` output: the
//! `Debug` of [`IdNumber`] and [`Phone`] prints the masked form, parse errors are fixed reasons,
//! and the `Debug` of [`Keyring`] names key ids only.
//!
//! Key rotation: new values are sealed with the active key, and every configured key still opens
//! the values it sealed; [`Keyring::is_current`] finds values to re-seal. The look-up key does not
//! rotate, so look-up hashes stay valid across rotations.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, Generate, Payload};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use chrono::{Datelike, FixedOffset, NaiveDate, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The 96-bit AES-GCM nonce.
type GcmNonce = aes_gcm::aead::Nonce<Aes256Gcm>;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The weights of the first 17 digits in the GB 11643-1999 checksum.
const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// The check character, indexed by the weighted sum modulo 11.
const ID_CHECK_CHARS: [u8; 11] = *b"10X98765432";

const ID_SHAPE: &str = "must be 18 characters: 17 digits and a check digit or X";
const ID_PROVINCE: &str = "has no valid province code";
const ID_BIRTH: &str = "holds no valid birth date";
const ID_CHECK: &str = "has a wrong check digit";
const PHONE_SHAPE: &str = "must be an 11-digit mainland mobile number starting 13–19";

/// The region code [`IdNumber::generate`] falls back to.
const DEFAULT_REGION: &str = "110101";

const KEY_FORMAT: &str = "must be 64 hex digits or standard base64 of 32 bytes";
const KEY_LENGTH: &str = "must be 32 bytes";
const LOOKUP_LENGTH: &str = "must be at least 32 bytes";

/// The id of the one key [`Keyring::from_secret`] makes.
const LOCAL_KEY_ID: &str = "local";
const SEAL_LABEL: &[u8] = b"civic grid seal";
const LOOKUP_LABEL: &[u8] = b"civic grid lookup";

/// A resident's citizen ID number (GB 11643-1999): 17 digits and a check character (0-9 or X),
/// the checksum valid, the embedded birth date a real date not in the future and not before
/// 1900-01-01, the first digit (province) 1-9.
///
/// It is stored normalised, with an uppercase X. Its `Debug` output is the masked form.
#[derive(Clone, PartialEq, Eq)]
pub struct IdNumber(String);

impl IdNumber {
    /// Parses an ID number; a lowercase x and surrounding whitespace are accepted.
    ///
    /// An error is a short reason that never contains the input, such as "has a wrong check
    /// digit".
    pub fn parse(text: &str) -> Result<IdNumber, &'static str> {
        let text = text.trim();
        let bytes = text.as_bytes();
        if bytes.len() != 18 || !bytes[..17].iter().all(u8::is_ascii_digit) {
            return Err(ID_SHAPE);
        }
        let check = bytes[17].to_ascii_uppercase();
        if !check.is_ascii_digit() && check != b'X' {
            return Err(ID_SHAPE);
        }
        if bytes[0] == b'0' {
            return Err(ID_PROVINCE);
        }
        match birth_in(&bytes[6..14]) {
            Some(birth) if birth >= earliest_birth() && birth <= today_in_china() => {}
            _ => return Err(ID_BIRTH),
        }
        if check_char(&bytes[..17]) != check {
            return Err(ID_CHECK);
        }
        let mut normal = String::with_capacity(18);
        normal.push_str(&text[..17]);
        normal.push(char::from(check));
        Ok(IdNumber(normal))
    }

    /// Makes a valid number for demo data from a 6-digit region code (such as "620802"), a birth
    /// date and a 3-digit sequence number, computing its check character.
    ///
    /// The standard gives odd sequence numbers to men and even ones to women; the sequence is
    /// used as given, modulo 1000. A region that is not 6 digits with a first digit 1-9 is
    /// replaced by "110101", and a birth date before 1900-01-01 or after today is moved to the
    /// nearer of those bounds, so the result always parses.
    pub fn generate(region: &str, birth: NaiveDate, sequence: u16) -> IdNumber {
        let valid_region = region.len() == 6 && region.bytes().all(|b| b.is_ascii_digit()) && !region.starts_with('0');
        let region = if valid_region { region } else { DEFAULT_REGION };
        let birth = birth.max(earliest_birth()).min(today_in_china());
        let (year, month, day) = (birth.year(), birth.month(), birth.day());
        let sequence = sequence % 1000;
        let mut text = format!("{region}{year:04}{month:02}{day:02}{sequence:03}");
        let check = check_char(&text.as_bytes()[..17]);
        text.push(char::from(check));
        IdNumber(text)
    }

    /// The number in full, normalised (uppercase X): only for sealing and look-up hashes, never
    /// for display.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The birth date embedded in the number.
    pub fn birth_date(&self) -> NaiveDate {
        // Parsing and generating both guarantee a valid date here; the fallback is unreachable.
        birth_in(&self.0.as_bytes()[6..14]).unwrap_or(NaiveDate::MIN)
    }

    /// The masked number: the first 3 characters, 11 asterisks and the last 4, such as
    /// `110***********1234`.
    pub fn masked(&self) -> String {
        mask_id_number(&self.0)
    }
}

impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IdNumber").field(&self.masked()).finish()
    }
}

/// A mainland China mobile number: 11 digits starting 13 to 19.
///
/// Parsing removes a +86 or 0086 prefix, spaces and hyphens. Its `Debug` output is the masked
/// form.
#[derive(Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    /// Parses a mobile number; an error is a short reason that never contains the input.
    pub fn parse(text: &str) -> Result<Phone, &'static str> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        let digits = compact.strip_prefix("+86").or_else(|| compact.strip_prefix("0086")).unwrap_or(&compact);
        let bytes = digits.as_bytes();
        if bytes.len() != 11
            || !bytes.iter().all(u8::is_ascii_digit)
            || bytes[0] != b'1'
            || !(b'3'..=b'9').contains(&bytes[1])
        {
            return Err(PHONE_SHAPE);
        }
        Ok(Phone(digits.to_owned()))
    }

    /// The number in full, 11 digits: only for sealing and look-up hashes, never for display.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The masked number: the first 3 digits, 4 asterisks and the last 4, such as `138****5678`.
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Phone").field(&self.masked()).finish()
    }
}

/// Masks any stored text of the ID-number kind, used when only the kind is known.
///
/// It keeps at most the first 3 and the last 4 characters and replaces the rest with asterisks,
/// as [`IdNumber::masked`] does; a text of 7 characters or fewer becomes all asterisks.
pub fn mask_id_number(full: &str) -> String {
    mask_keeping(full, 3, 4)
}

/// Masks any stored text of the phone kind, used when only the kind is known.
///
/// It keeps the first 3 and the last 4 characters and replaces the rest with asterisks, as
/// [`Phone::masked`] does; a text of 7 characters or fewer becomes all asterisks.
pub fn mask_phone(full: &str) -> String {
    mask_keeping(full, 3, 4)
}

/// Keeps `head` leading and `tail` trailing characters and masks the rest; a text no longer than
/// `head + tail` is masked entirely.
fn mask_keeping(full: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = full.chars().collect();
    let len = chars.len();
    if len <= head + tail {
        return "*".repeat(len);
    }
    let mut out = String::with_capacity(len);
    out.extend(&chars[..head]);
    out.push_str(&"*".repeat(len - head - tail));
    out.extend(&chars[len - tail..]);
    out
}

/// The check character of the first 17 digits of an ID number.
fn check_char(first17: &[u8]) -> u8 {
    let sum: u32 =
        first17.iter().zip(ID_WEIGHTS).map(|(digit, weight)| u32::from(digit.wrapping_sub(b'0')) * weight).sum();
    ID_CHECK_CHARS[(sum % 11) as usize]
}

/// The date written as 8 digits YYYYMMDD, if it is a real date.
fn birth_in(digits: &[u8]) -> Option<NaiveDate> {
    if digits.len() != 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let year = i32::try_from(decimal(&digits[..4])).ok()?;
    NaiveDate::from_ymd_opt(year, decimal(&digits[4..6]), decimal(&digits[6..8]))
}

/// The value of a short run of ASCII digits.
fn decimal(digits: &[u8]) -> u32 {
    digits.iter().fold(0, |n, digit| n * 10 + u32::from(digit.wrapping_sub(b'0')))
}

/// The earliest birth date accepted: 1900-01-01.
fn earliest_birth() -> NaiveDate {
    NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN)
}

/// Today's date in China (UTC+8), the latest birth date accepted.
fn today_in_china() -> NaiveDate {
    let now = Utc::now();
    match FixedOffset::east_opt(8 * 3600) {
        Some(china) => now.with_timezone(&china).date_naive(),
        None => now.date_naive(),
    }
}

/// The keys protecting personal data: AES-256-GCM keys by id (1 to 16 characters of a-z, 0-9 and
/// -), which one seals new values, and the HMAC-SHA256 key of the look-up hashes.
///
/// Its `Debug` output names the key ids only, never key material.
#[derive(Clone)]
pub struct Keyring {
    /// Every configured key, by id: each opens the values it sealed.
    ciphers: BTreeMap<String, Aes256Gcm>,
    /// The id of the key that seals new values.
    active: String,
    /// The active key's cipher.
    sealer: Aes256Gcm,
    /// HMAC-SHA256 keyed with the look-up key, cloned for each hash.
    lookup: HmacSha256,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.ciphers.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// A keyring could not be built from its configuration. Messages name key ids, never key
/// material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No data key is configured.
    #[error("no data key is configured")]
    NoKeys,
    /// A key id is not 1 to 16 characters of a-z, 0-9 and -.
    #[error("the key id {0:?} is not 1 to 16 characters of a-z, 0-9 and -")]
    BadKeyId(String),
    /// The active key id is not one of the configured keys.
    #[error("the active key {0:?} is not one of the configured keys")]
    UnknownActive(String),
    /// A data key is not 32 bytes written as 64 hex digits or standard base64.
    #[error("the data key {id:?} {reason}")]
    BadKey {
        /// The id of the key.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The look-up key is not at least 32 bytes written as hex or standard base64.
    #[error("the look-up key {0}")]
    BadLookupKey(&'static str),
}

/// Sealing a value failed: the system's random number generator failed, or the value or its
/// binding is beyond what AES-GCM can seal (gigabytes long).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The system's random number generator failed to make a nonce.
    #[error("the system's random number generator failed")]
    Random,
    /// The value or its binding is too long for AES-GCM.
    #[error("the value or its binding is too long to seal")]
    TooLong,
}

/// Reading a sealed value failed: unknown key id, malformed text, or authentication failed
/// (tampered, wrong key, or moved to another row or column: see the `aad` of [`Keyring::seal`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The value names a key id that is not configured.
    #[error("the value was sealed with key {0:?}, which is not configured")]
    UnknownKey(String),
    /// The text is not a sealed value.
    #[error("the sealed value is malformed")]
    Malformed,
    /// Authentication failed: the value was tampered with, sealed under another key with the
    /// same id, or sealed for another row or column.
    #[error("the sealed value failed authentication")]
    Rejected,
}

impl Keyring {
    /// Builds a keyring from its configuration.
    ///
    /// `keys` maps each key id to its key, 64 hex digits or standard base64 of 32 bytes;
    /// `active` is the id of the key that seals new values; `lookup` is the look-up key, hex or
    /// standard base64 of at least 32 bytes.
    pub fn new(keys: &BTreeMap<String, String>, active: &str, lookup: &str) -> Result<Keyring, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        let mut ciphers = BTreeMap::new();
        for (id, text) in keys {
            if !valid_key_id(id) {
                return Err(KeyError::BadKeyId(id.clone()));
            }
            let bytes = decode_key(text).map_err(|reason| KeyError::BadKey { id: id.clone(), reason })?;
            let cipher = <Aes256Gcm as aes_gcm::KeyInit>::new_from_slice(&bytes)
                .map_err(|_| KeyError::BadKey { id: id.clone(), reason: KEY_LENGTH })?;
            ciphers.insert(id.clone(), cipher);
        }
        let sealer = ciphers.get(active).cloned().ok_or_else(|| KeyError::UnknownActive(active.to_owned()))?;
        let lookup_key = decode_key(lookup).map_err(KeyError::BadLookupKey)?;
        if lookup_key.len() < 32 {
            return Err(KeyError::BadLookupKey(LOOKUP_LENGTH));
        }
        Ok(Keyring { ciphers, active: active.to_owned(), sealer, lookup: keyed_hmac(&lookup_key) })
    }

    /// Builds a keyring from raw secret bytes (the service's local key file in laptop mode).
    ///
    /// It holds one key, with id `local`: the sealing key is HMAC-SHA256(secret, "civic grid
    /// seal") and the look-up key HMAC-SHA256(secret, "civic grid lookup"), two distinct derived
    /// keys, never the raw secret.
    pub fn from_secret(secret: &[u8]) -> Keyring {
        let seal_key = derive_key(secret, SEAL_LABEL);
        let lookup_key = derive_key(secret, LOOKUP_LABEL);
        let sealer = <Aes256Gcm as aes_gcm::KeyInit>::new(&aes_gcm::Key::<Aes256Gcm>::from(seal_key));
        Keyring {
            ciphers: BTreeMap::from([(LOCAL_KEY_ID.to_owned(), sealer.clone())]),
            active: LOCAL_KEY_ID.to_owned(),
            sealer,
            lookup: keyed_hmac(&lookup_key),
        }
    }

    /// Seals `plain` with the active key under a fresh random 96-bit nonce, binding `aad`.
    ///
    /// The service passes an `aad` such as "streets/x/households/h/residents/r#id_number", so a
    /// sealed value cannot be moved to another row or column. The result is
    /// `{key_id}:{base64url-no-pad(nonce ‖ ciphertext ‖ tag)}`.
    pub fn seal(&self, plain: &str, aad: &str) -> Result<String, SealError> {
        let nonce = <GcmNonce as Generate>::try_generate().map_err(|_| SealError::Random)?;
        let payload = Payload { msg: plain.as_bytes(), aad: aad.as_bytes() };
        let sealed = self.sealer.encrypt(&nonce, payload).map_err(|_| SealError::TooLong)?;
        let mut body = Vec::with_capacity(NONCE_LEN + sealed.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&sealed);
        let id = &self.active;
        let body = URL_SAFE_NO_PAD.encode(body);
        Ok(format!("{id}:{body}"))
    }

    /// Opens a sealed value with the key it names, checking that it was sealed with the same
    /// `aad`.
    pub fn open(&self, sealed: &str, aad: &str) -> Result<String, OpenError> {
        let (id, body) = sealed.split_once(':').ok_or(OpenError::Malformed)?;
        if !valid_key_id(id) {
            return Err(OpenError::Malformed);
        }
        let cipher = self.ciphers.get(id).ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| OpenError::Malformed)?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = GcmNonce::try_from(nonce).map_err(|_| OpenError::Malformed)?;
        let payload = Payload { msg: ciphertext, aad: aad.as_bytes() };
        let plain = cipher.decrypt(&nonce, payload).map_err(|_| OpenError::Rejected)?;
        String::from_utf8(plain).map_err(|_| OpenError::Malformed)
    }

    /// The id of the key a sealed value was sealed with, used to find values to re-seal after a
    /// rotation; `None` if the text does not start with a key id and a colon.
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        sealed.split_once(':').map(|(id, _)| id).filter(|id| valid_key_id(id))
    }

    /// Whether `sealed` was sealed with the active key.
    pub fn is_current(&self, sealed: &str) -> bool {
        Self::key_id_of(sealed) == Some(self.active.as_str())
    }

    /// The look-up hash of a normalised value: the lowercase hex of HMAC-SHA256(look-up key,
    /// kind ‖ 0x00 ‖ value).
    ///
    /// `kind` is "id_number" or "phone", so equal digits of different kinds never collide. The
    /// hash does not depend on the active key.
    pub fn lookup_hash(&self, kind: &str, value: &str) -> String {
        let mut mac = self.lookup.clone();
        mac.update(kind.as_bytes());
        mac.update(&[0u8]);
        mac.update(value.as_bytes());
        to_hex(&mac.finalize().into_bytes())
    }
}

/// Whether `id` is 1 to 16 characters of a-z, 0-9 and -.
fn valid_key_id(id: &str) -> bool {
    (1..=16).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The bytes of a key written as hex (an even number of hex digits) or standard base64 (with or
/// without padding).
fn decode_key(text: &str) -> Result<Vec<u8>, &'static str> {
    let text = text.trim();
    if !text.is_empty() && text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return decode_hex(text).ok_or(KEY_FORMAT);
    }
    STANDARD.decode(text).or_else(|_| STANDARD_NO_PAD.decode(text)).map_err(|_| KEY_FORMAT)
}

/// The bytes of an even number of hex digits.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    fn nibble(b: u8) -> Option<u8> {
        char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes.chunks_exact(2).map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?)).collect()
}

/// Lowercase hex.
fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// HMAC-SHA256 keyed with `key`.
fn keyed_hmac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as hmac::KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// A 32-byte key derived from `secret` for one purpose: HMAC-SHA256(secret, label).
fn derive_key(secret: &[u8], label: &[u8]) -> [u8; 32] {
    keyed_hmac(secret).chain_update(label).finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid number computed by hand: the weighted sum of 11010119900307123 is 174, 174 mod 11
    /// is 9, and the map gives 3.
    const HAND_COMPUTED: &str = "110101199003071233";
    /// The common public example: the weighted sum of 11010519491231002 is 167, 167 mod 11 is 2,
    /// and the map gives X.
    const PUBLIC_EXAMPLE: &str = "11010519491231002X";
    /// A valid number ending 1234 (born 1980-01-05), for the mask.
    const ENDS_1234: &str = "110101198001051234";

    fn with_check(first17: &str) -> String {
        let mut text = first17.to_owned();
        text.push(char::from(check_char(first17.as_bytes())));
        text
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("a real date")
    }

    #[test]
    fn check_digit_of_known_numbers() {
        assert_eq!(check_char(b"11010519491231002"), b'X');
        assert_eq!(check_char(b"11010119900307123"), b'3');
        assert_eq!(check_char(b"11010119800105123"), b'4');
        for text in [HAND_COMPUTED, PUBLIC_EXAMPLE, ENDS_1234] {
            let id = IdNumber::parse(text).expect("a valid number");
            assert_eq!(id.as_str(), text);
        }
        assert_eq!(IdNumber::parse(PUBLIC_EXAMPLE).expect("valid").birth_date(), date(1949, 12, 31));
        assert_eq!(IdNumber::parse(HAND_COMPUTED).expect("valid").birth_date(), date(1990, 3, 7));
    }

    #[test]
    fn a_changed_digit_fails() {
        assert_eq!(IdNumber::parse("11010519491231003X"), Err(ID_CHECK));
        assert_eq!(IdNumber::parse("110101199003071234"), Err(ID_CHECK));
        assert_eq!(IdNumber::parse("210101199003071233"), Err(ID_CHECK));
        // Each single-digit change of the sequence or the check character fails.
        for position in [14, 15, 16, 17] {
            for replacement in b'0'..=b'9' {
                let mut bytes = HAND_COMPUTED.as_bytes().to_vec();
                if bytes[position] == replacement {
                    continue;
                }
                bytes[position] = replacement;
                let text = String::from_utf8(bytes).expect("ascii");
                assert!(IdNumber::parse(&text).is_err(), "position {position} changed");
            }
        }
    }

    #[test]
    fn wrong_shapes_fail() {
        assert_eq!(IdNumber::parse("11010519491231002"), Err(ID_SHAPE));
        assert_eq!(IdNumber::parse("11010519491231002X1"), Err(ID_SHAPE));
        assert_eq!(IdNumber::parse("11010A19491231002X"), Err(ID_SHAPE));
        assert_eq!(IdNumber::parse("11010519491231002Y"), Err(ID_SHAPE));
        assert_eq!(IdNumber::parse("ABCDEFGHIJKLMNOPQR"), Err(ID_SHAPE));
        assert_eq!(IdNumber::parse(""), Err(ID_SHAPE));
        assert_eq!(IdNumber::parse("11010519491231002Ⅹ"), Err(ID_SHAPE));
        assert_eq!(IdNumber::parse(&with_check("01010519491231002")), Err(ID_PROVINCE));
    }

    #[test]
    fn impossible_birth_dates_fail() {
        // February 30th.
        assert_eq!(IdNumber::parse("110101199002301236"), Err(ID_BIRTH));
        // Month 13.
        assert_eq!(IdNumber::parse(&with_check("11010119901301123")), Err(ID_BIRTH));
        // In the future.
        assert_eq!(IdNumber::parse("110101209912310015"), Err(ID_BIRTH));
        let tomorrow = today_in_china().succ_opt().expect("a tomorrow");
        let (y, m, d) = (tomorrow.year(), tomorrow.month(), tomorrow.day());
        assert_eq!(IdNumber::parse(&with_check(&format!("110101{y:04}{m:02}{d:02}001"))), Err(ID_BIRTH));
        // Before 1900: a well-known example with a valid checksum.
        assert_eq!(IdNumber::parse("440524188001010014"), Err(ID_BIRTH));
    }

    #[test]
    fn lowercase_x_and_whitespace_are_accepted_and_normalised() {
        let id = IdNumber::parse("  11010519491231002x\n").expect("a lowercase x is accepted");
        assert_eq!(id.as_str(), PUBLIC_EXAMPLE);
        assert_eq!(id, IdNumber::parse(PUBLIC_EXAMPLE).expect("valid"));
    }

    #[test]
    fn generated_numbers_parse_with_their_birth_date() {
        let today = today_in_china();
        let mut count = 0;
        for region in ["620802", "110101", "440305", "650102", "62080x", "12345", "012345", ""] {
            let expected_region = if region.len() == 6 && !region.contains('x') && !region.starts_with('0') {
                region
            } else {
                DEFAULT_REGION
            };
            let mut birth = Some(date(1900, 1, 1));
            while let Some(day) = birth.filter(|day| *day <= today) {
                for sequence in [0u16, 1, 2, 57, 500, 998, 999] {
                    let id = IdNumber::generate(region, day, sequence);
                    let parsed = IdNumber::parse(id.as_str()).expect("a generated number parses");
                    assert_eq!(parsed, id);
                    assert_eq!(id.birth_date(), day);
                    assert!(id.as_str().starts_with(expected_region));
                    assert_eq!(&id.as_str()[14..17], format!("{sequence:03}"));
                    count += 1;
                }
                birth = day.checked_add_days(chrono::Days::new(97));
            }
            let last = IdNumber::generate(region, today, 7);
            assert_eq!(last.birth_date(), today);
        }
        assert!(count > 10_000);
        // Out-of-range inputs are brought into range, so the result still parses.
        let old = IdNumber::generate("620802", date(1850, 6, 1), 1234);
        assert!(IdNumber::parse(old.as_str()).is_ok());
        assert_eq!(old.birth_date(), date(1900, 1, 1));
        assert_eq!(&old.as_str()[14..17], "234");
        let future = IdNumber::generate("620802", date(2999, 1, 1), 3);
        assert!(IdNumber::parse(future.as_str()).is_ok());
        assert_eq!(future.birth_date(), today);
    }

    #[test]
    fn masks() {
        let id = IdNumber::parse(ENDS_1234).expect("valid");
        assert_eq!(id.masked(), "110***********1234");
        assert_eq!(mask_id_number(ENDS_1234), "110***********1234");
        assert_eq!(mask_id_number("1234567"), "*******");
        assert_eq!(mask_id_number("12345678"), "123*5678");
        assert_eq!(mask_id_number(""), "");
        assert_eq!(mask_id_number("张三李四"), "****");
        let phone = Phone::parse("13812345678").expect("valid");
        assert_eq!(phone.masked(), "138****5678");
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_phone("12345"), "*****");
        assert_eq!(mask_phone("1234567"), "*******");
    }

    #[test]
    fn debug_shows_only_the_masked_form() {
        let id = IdNumber::parse(ENDS_1234).expect("valid");
        let text = format!("{id:?}");
        assert!(!text.contains(ENDS_1234));
        assert!(!text.contains("19800105"));
        assert_eq!(text, r#"IdNumber("110***********1234")"#);
        let phone = Phone::parse("13812345678").expect("valid");
        let text = format!("{phone:?}");
        assert!(!text.contains("13812345678"));
        assert_eq!(text, r#"Phone("138****5678")"#);
        let err = IdNumber::parse("110101198001051235").expect_err("wrong check digit");
        assert!(!err.contains("110101"));
    }

    #[test]
    fn phones() {
        for text in ["13800138000", "+86 138-0013-8000", "0086 13800138000", " 138 0013 8000 ", "+8613800138000"] {
            let phone = Phone::parse(text).expect("a valid mobile number");
            assert_eq!(phone.as_str(), "13800138000");
        }
        assert_eq!(Phone::parse("19912345678").expect("199 is mobile").as_str(), "19912345678");
        for text in ["12800138000", "1380013800", "138001380001", "1380013800a", "+1 3800138000", "", "23800138000"] {
            assert_eq!(Phone::parse(text), Err(PHONE_SHAPE), "{text}");
        }
    }

    fn hex_key(byte: &str) -> String {
        byte.repeat(32)
    }

    fn base64_key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    fn key_map(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(id, key)| ((*id).to_owned(), key.clone())).collect()
    }

    fn lookup_key() -> String {
        hex_key("33")
    }

    fn ring_k1() -> Keyring {
        Keyring::new(&key_map(&[("k1", hex_key("11"))]), "k1", &lookup_key()).expect("a valid keyring")
    }

    fn ring_k1_k2() -> Keyring {
        Keyring::new(&key_map(&[("k1", hex_key("11")), ("k2", base64_key(0x22))]), "k2", &lookup_key())
            .expect("a valid keyring")
    }

    const AAD: &str = "streets/x/households/h/residents/r#id_number";

    #[test]
    fn seal_and_open() {
        let ring = ring_k1();
        let sealed = ring.seal(PUBLIC_EXAMPLE, AAD).expect("sealed");
        assert!(sealed.starts_with("k1:"));
        assert!(!sealed.contains(PUBLIC_EXAMPLE));
        assert_eq!(ring.open(&sealed, AAD).expect("opens"), PUBLIC_EXAMPLE);
        let empty = ring.seal("", AAD).expect("sealed");
        assert_eq!(ring.open(&empty, AAD).expect("opens"), "");
        let chinese = ring.seal("张三", "").expect("sealed");
        assert_eq!(ring.open(&chinese, "").expect("opens"), "张三");
    }

    #[test]
    fn a_value_moved_elsewhere_is_rejected() {
        let ring = ring_k1();
        let sealed = ring.seal(PUBLIC_EXAMPLE, AAD).expect("sealed");
        assert_eq!(ring.open(&sealed, "streets/x/households/h/residents/other#id_number"), Err(OpenError::Rejected));
        assert_eq!(ring.open(&sealed, "streets/x/households/h/residents/r#phone"), Err(OpenError::Rejected));
        assert_eq!(ring.open(&sealed, ""), Err(OpenError::Rejected));
    }

    #[test]
    fn tampering_is_detected() {
        let ring = ring_k1();
        let sealed = ring.seal(PUBLIC_EXAMPLE, AAD).expect("sealed");
        let (id, body) = sealed.split_once(':').expect("a key id");
        let chars: Vec<char> = body.chars().collect();
        for position in [0, chars.len() / 2, chars.len() - 2, chars.len() - 1] {
            let mut changed = chars.clone();
            changed[position] = if changed[position] == 'A' { 'B' } else { 'A' };
            let changed: String = changed.into_iter().collect();
            let tampered = format!("{id}:{changed}");
            assert!(
                matches!(ring.open(&tampered, AAD), Err(OpenError::Rejected | OpenError::Malformed)),
                "position {position}"
            );
        }
        assert_eq!(ring.open(&sealed[..sealed.len() - 4], AAD).ok(), None);
        assert_eq!(ring.open("k1:", AAD), Err(OpenError::Malformed));
        assert_eq!(ring.open("k1:AAAA", AAD), Err(OpenError::Malformed));
        assert_eq!(ring.open("no colon", AAD), Err(OpenError::Malformed));
        assert_eq!(ring.open(&format!("K1:{body}"), AAD), Err(OpenError::Malformed));
        assert_eq!(ring.open(&format!("k1:{body}="), AAD), Err(OpenError::Malformed));
    }

    #[test]
    fn old_keys_stay_readable_after_rotation() {
        let old = ring_k1();
        let sealed = old.seal(PUBLIC_EXAMPLE, AAD).expect("sealed");
        assert!(old.is_current(&sealed));
        assert_eq!(Keyring::key_id_of(&sealed), Some("k1"));

        let rotated = ring_k1_k2();
        assert_eq!(rotated.open(&sealed, AAD).expect("the old key still opens"), PUBLIC_EXAMPLE);
        assert!(!rotated.is_current(&sealed));
        let resealed = rotated.seal(PUBLIC_EXAMPLE, AAD).expect("sealed");
        assert_eq!(Keyring::key_id_of(&resealed), Some("k2"));
        assert!(rotated.is_current(&resealed));
        assert_eq!(rotated.open(&resealed, AAD).expect("opens"), PUBLIC_EXAMPLE);
        assert_eq!(old.open(&resealed, AAD), Err(OpenError::UnknownKey("k2".to_owned())));

        // A value relabelled with another configured key's id fails authentication.
        let relabelled = resealed.replacen("k2:", "k1:", 1);
        assert_eq!(rotated.open(&relabelled, AAD), Err(OpenError::Rejected));

        assert_eq!(Keyring::key_id_of("no colon"), None);
        assert_eq!(Keyring::key_id_of("Bad Id:xyz"), None);
        assert!(!rotated.is_current("garbage"));
    }

    #[test]
    fn unknown_key_id() {
        let only_k2 = Keyring::new(&key_map(&[("k2", base64_key(0x22))]), "k2", &lookup_key()).expect("valid");
        let sealed = ring_k1().seal(PUBLIC_EXAMPLE, AAD).expect("sealed");
        assert_eq!(only_k2.open(&sealed, AAD), Err(OpenError::UnknownKey("k1".to_owned())));
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let ring = ring_k1();
        let a = ring.seal(PUBLIC_EXAMPLE, AAD).expect("sealed");
        let b = ring.seal(PUBLIC_EXAMPLE, AAD).expect("sealed");
        assert_ne!(a, b);
        assert_eq!(ring.open(&a, AAD), ring.open(&b, AAD));
    }

    #[test]
    fn lookup_hashes() {
        let ring = ring_k1();
        let hash = ring.lookup_hash("phone", "13800138000");
        // HMAC-SHA256(0x33 × 32, "phone" ‖ 0x00 ‖ "13800138000"), computed independently.
        assert_eq!(hash, "cfb6887891825d4997688a2c82d4163f3cff1681385e7628bd221b467f3fd98c");
        assert_eq!(ring.lookup_hash("phone", "13800138000"), hash);
        assert_ne!(ring.lookup_hash("id_number", "13800138000"), hash);
        assert_ne!(ring.lookup_hash("phone", "13800138001"), hash);
        assert_eq!(ring_k1_k2().lookup_hash("phone", "13800138000"), hash);
        let other_lookup =
            Keyring::new(&key_map(&[("k1", hex_key("11"))]), "k1", &hex_key("44")).expect("a valid keyring");
        assert_ne!(other_lookup.lookup_hash("phone", "13800138000"), hash);
    }

    #[test]
    fn keyring_from_a_secret() {
        let secret = b"civic local secret, 32 bytes...!";
        let ring = Keyring::from_secret(secret);
        let sealed = ring.seal(PUBLIC_EXAMPLE, AAD).expect("sealed");
        assert_eq!(Keyring::key_id_of(&sealed), Some("local"));
        assert!(ring.is_current(&sealed));
        assert_eq!(ring.open(&sealed, AAD).expect("opens"), PUBLIC_EXAMPLE);
        assert_eq!(Keyring::from_secret(secret).open(&sealed, AAD).expect("opens"), PUBLIC_EXAMPLE);
        // The look-up key is HMAC-SHA256(secret, "civic grid lookup"), computed independently.
        assert_eq!(
            ring.lookup_hash("id_number", PUBLIC_EXAMPLE),
            "4236941dbb1092b8263803a3a0f9a28528235bb509127330e0416f87c350ffc3"
        );
        // Neither key is the raw secret.
        let raw = STANDARD.encode(secret);
        let raw_ring = Keyring::new(&key_map(&[("local", raw.clone())]), "local", &raw).expect("valid");
        assert_eq!(raw_ring.open(&sealed, AAD), Err(OpenError::Rejected));
        assert_ne!(raw_ring.lookup_hash("id_number", PUBLIC_EXAMPLE), ring.lookup_hash("id_number", PUBLIC_EXAMPLE));
        // A different secret cannot open the value.
        assert_eq!(Keyring::from_secret(b"another secret").open(&sealed, AAD), Err(OpenError::Rejected));
    }

    #[test]
    fn keyring_refuses_bad_configuration() {
        let lookup = lookup_key();
        let err = Keyring::new(&key_map(&[("k1", hex_key("11")[..32].to_owned())]), "k1", &lookup)
            .expect_err("a 16-byte key is refused");
        assert_eq!(err, KeyError::BadKey { id: "k1".to_owned(), reason: KEY_LENGTH });
        let err = Keyring::new(&key_map(&[("k1", STANDARD.encode([1u8; 16]))]), "k1", &lookup)
            .expect_err("a 16-byte base64 key is refused");
        assert_eq!(err, KeyError::BadKey { id: "k1".to_owned(), reason: KEY_LENGTH });
        let err = Keyring::new(&key_map(&[("k1", "not a key at all!".to_owned())]), "k1", &lookup)
            .expect_err("a key that is neither hex nor base64 is refused");
        assert_eq!(err, KeyError::BadKey { id: "k1".to_owned(), reason: KEY_FORMAT });
        let err = Keyring::new(&key_map(&[("k1", hex_key("11"))]), "k9", &lookup)
            .expect_err("an active id that is not among the keys is refused");
        assert_eq!(err, KeyError::UnknownActive("k9".to_owned()));
        for id in ["K1", "", "k 1", "k:1", "abcdefghijklmnopq", "键"] {
            let err =
                Keyring::new(&key_map(&[(id, hex_key("11"))]), id, &lookup).expect_err("an invalid key id is refused");
            assert_eq!(err, KeyError::BadKeyId(id.to_owned()));
        }
        let err = Keyring::new(&BTreeMap::new(), "k1", &lookup).expect_err("no keys are refused");
        assert_eq!(err, KeyError::NoKeys);
        let err = Keyring::new(&key_map(&[("k1", hex_key("11"))]), "k1", &hex_key("33")[..32])
            .expect_err("a 16-byte look-up key is refused");
        assert_eq!(err, KeyError::BadLookupKey(LOOKUP_LENGTH));
        let err = Keyring::new(&key_map(&[("k1", hex_key("11"))]), "k1", "%%%")
            .expect_err("a look-up key that is neither hex nor base64 is refused");
        assert_eq!(err, KeyError::BadLookupKey(KEY_FORMAT));
        // A longer look-up key is fine; keys may be padded base64, unpadded base64 or hex.
        let unpadded = base64_key(0x22).trim_end_matches('=').to_owned();
        assert!(
            Keyring::new(&key_map(&[("k1", hex_key("11")), ("k-2", unpadded)]), "k-2", &hex_key("55").repeat(2))
                .is_ok()
        );
        // Messages never hold key material.
        let message = KeyError::BadKey { id: "k1".to_owned(), reason: KEY_LENGTH }.to_string();
        assert!(!message.contains("1111"));
    }

    #[test]
    fn keyring_debug_holds_no_key_material() {
        let ring = ring_k1_k2();
        let text = format!("{ring:?}");
        assert!(text.contains("k1") && text.contains("k2"));
        assert!(!text.contains("1111"));
        assert!(!text.contains("3333"));
        assert!(!text.contains(&base64_key(0x22)));
        assert!(!text.contains(&base64_key(0x22)[..8]));
        let local = format!("{:?}", Keyring::from_secret(b"civic local secret, 32 bytes...!"));
        assert!(local.contains("local"));
        assert!(!local.contains("secret"));
    }
}
