//! An OTLP/HTTP request body to an `ExportMetricsServiceRequest`: the content type picks protobuf
//! or OTLP/JSON, `Content-Encoding: gzip` is undone under the size limit (a small gzip body can
//! expand to gigabytes), and every failure says why in words a client can act on.

use std::io::Read;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

/// How a body is encoded, from its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "unsupported content type `{0}`: send application/x-protobuf or application/json \
         (OTLP/HTTP)"
    )]
    UnsupportedType(String),
    #[error("unsupported content encoding `{0}`: send gzip or an uncompressed body")]
    UnsupportedEncoding(String),
    #[error("the payload is larger than the receiver's limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the gzip body cannot be decompressed: {0}")]
    Gzip(std::io::Error),
    #[error("not a protobuf ExportMetricsServiceRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("not an OTLP/JSON ExportMetricsServiceRequest: {0}")]
    Json(#[from] serde_json::Error),
}

/// The encoding a `Content-Type` names (parameters such as `charset` are ignored).
pub fn encoding(content_type: Option<&str>) -> Result<Encoding, DecodeError> {
    let given = content_type.unwrap_or("");
    let essence = given.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/x-protobuf")
        || essence.eq_ignore_ascii_case("application/protobuf")
    {
        Ok(Encoding::Protobuf)
    } else if essence.eq_ignore_ascii_case("application/json") {
        Ok(Encoding::Json)
    } else {
        Err(DecodeError::UnsupportedType(
            given.chars().take(100).collect(),
        ))
    }
}

/// Whether a `Content-Encoding` means gzip; an unknown encoding is refused.
pub fn gzipped(content_encoding: Option<&str>) -> Result<bool, DecodeError> {
    match content_encoding.map(str::trim) {
        None | Some("") => Ok(false),
        Some(e) if e.eq_ignore_ascii_case("identity") => Ok(false),
        Some(e) if e.eq_ignore_ascii_case("gzip") => Ok(true),
        Some(e) => Err(DecodeError::UnsupportedEncoding(
            e.chars().take(100).collect(),
        )),
    }
}

/// Decodes a body of at most `limit` bytes, decompressed.
pub fn decode(
    body: &[u8],
    encoding: Encoding,
    gzip: bool,
    limit: usize,
) -> Result<ExportMetricsServiceRequest, DecodeError> {
    if body.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    let inflated;
    let plain = if gzip {
        let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
        flate2::read::GzDecoder::new(body)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(DecodeError::Gzip)?;
        if out.len() > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        inflated = out;
        &inflated[..]
    } else {
        body
    };
    Ok(match encoding {
        Encoding::Protobuf => ExportMetricsServiceRequest::decode(plain)?,
        Encoding::Json => serde_json::from_slice(plain)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_and_encodings() {
        assert_eq!(
            encoding(Some("application/x-protobuf")).unwrap(),
            Encoding::Protobuf
        );
        assert_eq!(
            encoding(Some("application/json; charset=utf-8")).unwrap(),
            Encoding::Json
        );
        for bad in [None, Some("text/plain"), Some("application/grpc")] {
            assert!(matches!(
                encoding(bad),
                Err(DecodeError::UnsupportedType(_))
            ));
        }
        assert!(gzipped(Some("gzip")).unwrap());
        assert!(!gzipped(None).unwrap());
        assert!(gzipped(Some("br")).is_err());
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 4096);
        let error = decode(&bomb, Encoding::Protobuf, true, 64 * 1024).unwrap_err();
        assert!(
            matches!(error, DecodeError::TooLarge { limit: 65536 }),
            "{error}"
        );
    }

    #[test]
    fn truncated_and_garbage_bodies_say_why() {
        let error = decode(b"\x0a\xff\xff", Encoding::Protobuf, false, 1024).unwrap_err();
        assert!(error.to_string().starts_with("not a protobuf"), "{error}");
        let error = decode(b"{\"resourceMetrics\": [", Encoding::Json, false, 1024).unwrap_err();
        assert!(error.to_string().contains("line 1 column"), "{error}");
        let error = decode(b"\x1f\x8b\x08\x00garbage", Encoding::Json, true, 1024).unwrap_err();
        assert!(matches!(error, DecodeError::Gzip(_)), "{error}");
    }
}
