//! Photos of issues: the image's type told by its content (JPEG, PNG, WebP — nothing else), its
//! location data removed (JPEG APP1 EXIF and XMP segments; PNG eXIf and text chunks; WebP EXIF
//! and XMP chunks), and the result stored once by its SHA-256.

use chrono::Utc;
use civic_kit::error::{Error, Result};
use civic_kit::idempotency::RequestKey;
use civic_kit::names::Id;
use civic_kit::time;
use civic_kit::write::Change;
use civic_proto::issues::{AddIssueAttachmentRequest, Attachment, AttachmentContent, GetIssueAttachmentRequest};
use sha2::{Digest, Sha256};
use tonic::Request;

use crate::Issues;
use crate::api::{Access, record};
use crate::domain::{IssueName, Step};

/// The most photos an issue keeps.
pub const MAX_PER_ISSUE: usize = 10;

/// The kinds of image taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jpeg,
    Png,
    Webp,
}

impl Kind {
    /// The kind `bytes` are, from their first bytes.
    pub fn sniff(bytes: &[u8]) -> Option<Kind> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Kind::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Kind::Png)
        } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(Kind::Webp)
        } else {
            None
        }
    }

    /// Its media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Kind::Jpeg => "image/jpeg",
            Kind::Png => "image/png",
            Kind::Webp => "image/webp",
        }
    }
}

/// Why an image was refused.
fn malformed(what: &str) -> Error {
    Error::invalid("content", format!("is not a well-formed image: {what}"))
}

/// The image without its location data (and other metadata that may hold it): a new buffer,
/// or INVALID_ARGUMENT naming `content` when the image is not well formed.
pub fn strip(kind: Kind, bytes: &[u8]) -> Result<Vec<u8>> {
    match kind {
        Kind::Jpeg => strip_jpeg(bytes),
        Kind::Png => strip_png(bytes),
        Kind::Webp => strip_webp(bytes),
    }
}

/// JPEG: the segments before the image data, without APP1 segments (EXIF, XMP) and comments;
/// the data from the first SOS on as it is.
fn strip_jpeg(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..2]);
    let mut at = 2;
    loop {
        // Fill bytes (0xFF) may precede a marker.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) else {
            return Err(malformed("a JPEG segment does not begin with a marker"));
        };
        match marker {
            // Start of scan: the rest is the image.
            0xDA => {
                out.extend_from_slice(&bytes[at..]);
                return Ok(out);
            }
            // Markers without a length.
            0xD8 | 0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&bytes[at..at + 2]);
                at += 2;
                continue;
            }
            0xD9 => {
                out.extend_from_slice(&bytes[at..at + 2]);
                return Ok(out);
            }
            _ => {}
        }
        let length = match (bytes.get(at + 2), bytes.get(at + 3)) {
            (Some(&hi), Some(&lo)) => usize::from(hi) << 8 | usize::from(lo),
            _ => return Err(malformed("a JPEG segment is cut short")),
        };
        if length < 2 || at + 2 + length > bytes.len() {
            return Err(malformed("a JPEG segment's length runs past the end"));
        }
        let segment = &bytes[at..at + 2 + length];
        // APP1 (EXIF, XMP: GPS position, device) and COM (free text) are left out.
        if marker != 0xE1 && marker != 0xFE {
            out.extend_from_slice(segment);
        }
        at += 2 + length;
    }
}

/// PNG: every chunk but eXIf and the text chunks (tEXt, zTXt, iTXt: XMP and comments).
fn strip_png(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..8]);
    let mut at = 8;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 8) else { return Err(malformed("a PNG chunk is cut short")) };
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let end = at.checked_add(12).and_then(|n| n.checked_add(length)).filter(|end| *end <= bytes.len());
        let Some(end) = end else { return Err(malformed("a PNG chunk's length runs past the end")) };
        let kind = &header[4..8];
        if !matches!(kind, b"eXIf" | b"tEXt" | b"zTXt" | b"iTXt") {
            out.extend_from_slice(&bytes[at..end]);
        }
        at = end;
        if kind == b"IEND" {
            break;
        }
    }
    Ok(out)
}

/// WebP: every chunk but EXIF and XMP, the extended header's flags for them cleared, the RIFF
/// size written again.
fn strip_webp(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(b"RIFF\0\0\0\0WEBP");
    let mut at = 12;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 8) else { return Err(malformed("a WebP chunk is cut short")) };
        let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let padded = length + (length & 1);
        let end = at.checked_add(8).and_then(|n| n.checked_add(padded)).filter(|end| *end <= bytes.len());
        let Some(end) = end else { return Err(malformed("a WebP chunk's length runs past the end")) };
        let kind = &header[0..4];
        match kind {
            b"EXIF" | b"XMP " => {}
            b"VP8X" => {
                let start = out.len();
                out.extend_from_slice(&bytes[at..end]);
                // Flags: bit 3 EXIF, bit 2 XMP.
                if let Some(flags) = out.get_mut(start + 8) {
                    *flags &= !0b0000_1100;
                }
            }
            _ => out.extend_from_slice(&bytes[at..end]),
        }
        at = end;
    }
    let size = u32::try_from(out.len() - 8).map_err(|_| malformed("too large"))?;
    out[4..8].copy_from_slice(&size.to_le_bytes());
    Ok(out)
}

/// SHA-256 in lowercase hex.
fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn attachment_name(issue: &IssueName, sha256: &str) -> String {
    format!("{issue}/attachments/h{}", &sha256[..40])
}

impl Issues {
    /// AddIssueAttachment: checked, stripped and hashed off the runtime's workers, then the
    /// image (once) and its link written with the issue's change and event.
    pub(crate) async fn add_attachment(&self, request: Request<AddIssueAttachmentRequest>) -> Result<Attachment> {
        let caller = self.auth.caller(request.metadata())?;
        let req = request.into_inner();
        let name = IssueName::parse("parent", &req.parent)?;
        let access = self.access(&caller, name.street())?;
        if req.content.len() > self.rules.max_attachment_bytes {
            return Err(Error::invalid("content", format!("is larger than {} bytes", self.rules.max_attachment_bytes)));
        }
        let key = RequestKey::new(caller.key(), "AddIssueAttachment", &req.request_id, &req)?;
        let content = req.content;
        let prepared = tokio::task::spawn_blocking(move || {
            let kind =
                Kind::sniff(&content).ok_or_else(|| Error::invalid("content", "must be a JPEG, PNG or WebP image"))?;
            let kept = strip(kind, &content)?;
            let sha = hex_sha256(&kept);
            Ok::<_, Error>((kind, kept, sha))
        })
        .await
        .map_err(Error::internal)??;
        let (kind, kept, sha) = prepared;
        let actor = caller.key();
        self.writer
            .write(&key, async |c: &mut Change| {
                let Some(mut case) = crate::store::get_in(c.tx(), &name).await? else {
                    return Err(if matches!(access, Access::Street) {
                        Error::not_found(name.to_string())
                    } else {
                        crate::api::denied()
                    });
                };
                let allowed = self.may_handle(&access, &case).await?
                    || (matches!(access, Access::Resident(_)) && self.sees(&access, &case).await?);
                if !allowed {
                    return Err(crate::api::denied());
                }
                let now = Utc::now();
                let attachment = Attachment {
                    name: attachment_name(&name, &sha),
                    content_type: kind.content_type().to_owned(),
                    size_bytes: kept.len() as i64,
                    sha256: sha.clone(),
                    uploaded_by: actor.clone(),
                    create_time: Some(time::to_timestamp(now)),
                };
                if let Some(existing) = case.issue.attachments.iter().find(|a| a.sha256 == sha) {
                    return Ok(existing.clone());
                }
                if case.issue.attachments.len() >= MAX_PER_ISSUE {
                    return Err(Error::failed_precondition(
                        "TOO_MANY_ATTACHMENTS",
                        format!("an issue keeps at most {MAX_PER_ISSUE} photos"),
                    ));
                }
                let stamp = time::to_text(now);
                sqlx::query(
                    "insert into attachments (sha256, content_type, size_bytes, content, created_at, updated_at)
                     values ($1, $2, $3, $4, $5, $5) on conflict (sha256) do nothing",
                )
                .bind(&sha)
                .bind(kind.content_type())
                .bind(kept.len() as i64)
                .bind(kept.as_slice())
                .bind(&stamp)
                .execute(&mut **c.tx())
                .await?;
                sqlx::query(
                    "insert into issue_attachments (street, issue_id, sha256, uploaded_by, created_at, updated_at)
                     values ($1, $2, $3, $4, $5, $5)",
                )
                .bind(name.street().as_str())
                .bind(name.id().as_str())
                .bind(&sha)
                .bind(&actor)
                .bind(&stamp)
                .execute(&mut **c.tx())
                .await?;
                case.issue.attachments.push(attachment.clone());
                case.version += 1;
                case.issue.update_time = Some(time::to_timestamp(now));
                let step = Step { action: "attached", text: String::new(), public: true };
                record(c, &case, &step, &actor).await?;
                Ok(attachment)
            })
            .await
    }

    /// GetIssueAttachment: the photo, to whoever may see its issue.
    pub(crate) async fn get_attachment(
        &self,
        request: Request<GetIssueAttachmentRequest>,
    ) -> Result<AttachmentContent> {
        let caller = self.auth.caller(request.metadata())?;
        let parts = civic_kit::names::parse("name", &request.get_ref().name, &["streets", "issues", "attachments"])?;
        let street = civic_kit::names::StreetId::parse("name", parts[0])?;
        let issue = IssueName::new(street, Id::parse("name", parts[1])?);
        let id = parts[2].to_owned();
        let (case, _) = self.visible(&caller, &issue).await?;
        let Some(attachment) = case.issue.attachments.iter().find(|a| a.name.ends_with(&format!("/{id}"))) else {
            return Err(Error::not_found(request.get_ref().name.clone()));
        };
        let row: Option<(Vec<u8>,)> = sqlx::query_as("select content from attachments where sha256 = $1")
            .bind(&attachment.sha256)
            .fetch_optional(self.writer.db().reader())
            .await?;
        let Some((content,)) = row else { return Err(Error::not_found(request.get_ref().name.clone())) };
        Ok(AttachmentContent { attachment: Some(attachment.clone()), content })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JPEG's skeleton: SOI, an APP0, an APP1 EXIF with a GPS block, a comment, a DQT, SOS
    /// and data, EOI.
    fn jpeg() -> Vec<u8> {
        let segment = |marker: u8, payload: &[u8]| {
            let length = (payload.len() + 2) as u16;
            let mut s = vec![0xFF, marker];
            s.extend_from_slice(&length.to_be_bytes());
            s.extend_from_slice(payload);
            s
        };
        let mut out = vec![0xFF, 0xD8];
        out.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        out.extend(segment(0xE1, b"Exif\0\0GPSLatitude 35.53N GPSLongitude 106.64E"));
        out.extend(segment(0xFE, b"taken at home"));
        out.extend(segment(0xDB, &[0u8; 65]));
        out.extend(segment(0xDA, &[1, 1, 0, 0, 63, 0]));
        out.extend_from_slice(&[0x12, 0x34, 0xFF, 0x00, 0x56]);
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }

    fn png() -> Vec<u8> {
        let chunk = |kind: &[u8; 4], data: &[u8]| {
            let mut c = (data.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(data);
            c.extend_from_slice(&[0, 0, 0, 0]);
            c
        };
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        out.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]));
        out.extend(chunk(b"eXIf", b"MM\0*GPSLatitude 35.53N"));
        out.extend(chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0<exif:GPSLatitude>35.53</exif:GPSLatitude>"));
        out.extend(chunk(b"IDAT", &[1, 2, 3]));
        out.extend(chunk(b"IEND", &[]));
        out
    }

    fn webp() -> Vec<u8> {
        let chunk = |kind: &[u8; 4], data: &[u8]| {
            let mut c = kind.to_vec();
            c.extend_from_slice(&(data.len() as u32).to_le_bytes());
            c.extend_from_slice(data);
            if data.len() % 2 == 1 {
                c.push(0);
            }
            c
        };
        let mut body = b"WEBP".to_vec();
        body.extend(chunk(b"VP8X", &[0b0000_1100, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        body.extend(chunk(b"VP8 ", &[1, 2, 3, 4, 5]));
        body.extend(chunk(b"EXIF", b"MM\0*GPSLatitude 35.53N"));
        body.extend(chunk(b"XMP ", b"<exif:GPSLatitude>35.53</exif:GPSLatitude>"));
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend(body);
        out
    }

    fn holds(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn images_are_told_by_their_content() {
        assert_eq!(Kind::sniff(&jpeg()), Some(Kind::Jpeg));
        assert_eq!(Kind::sniff(&png()), Some(Kind::Png));
        assert_eq!(Kind::sniff(&webp()), Some(Kind::Webp));
        for other in [&b"GIF89a......"[..], b"%PDF-1.7", b"<svg xmlns=", b"", b"\xFF\xD8"] {
            assert_eq!(Kind::sniff(other), None, "{other:?}");
        }
    }

    #[test]
    fn location_data_is_removed_and_the_image_kept() {
        for (kind, image) in [(Kind::Jpeg, jpeg()), (Kind::Png, png()), (Kind::Webp, webp())] {
            assert!(holds(&image, b"GPSLatitude"), "{kind:?}: the sample holds a position");
            let kept = strip(kind, &image).expect("strips");
            assert!(!holds(&kept, b"GPSLatitude"), "{kind:?}: the position is gone");
            assert_eq!(Kind::sniff(&kept), Some(kind), "{kind:?}: still the same kind");
            assert!(kept.len() < image.len());
            assert_eq!(strip(kind, &kept).expect("again"), kept, "{kind:?}: stripping twice changes nothing");
        }
        let jpeg = strip(Kind::Jpeg, &jpeg()).expect("jpeg");
        assert!(holds(&jpeg, &[0x12, 0x34, 0xFF, 0x00, 0x56]), "the scan data is kept");
        assert!(!holds(&jpeg, b"taken at home"), "comments go too");
        let webp = strip(Kind::Webp, &webp()).expect("webp");
        assert_eq!(u32::from_le_bytes([webp[4], webp[5], webp[6], webp[7]]) as usize, webp.len() - 8);
        assert_eq!(webp[20] & 0b0000_1100, 0, "the EXIF and XMP flags are cleared");
    }

    #[test]
    fn broken_images_are_refused() {
        let mut cut = jpeg();
        cut.truncate(30);
        assert_eq!(strip(Kind::Jpeg, &cut).expect_err("cut").violations()[0].field, "content");
        let mut png = png();
        png[11] = 0xFF; // IHDR's length far past the end
        assert!(strip(Kind::Png, &png).is_err());
        let mut webp = webp();
        webp[16] = 0xFF;
        assert!(strip(Kind::Webp, &webp).is_err());
    }
}
