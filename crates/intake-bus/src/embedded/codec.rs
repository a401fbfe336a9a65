//! How headers are stored in one BLOB column: for each header in order, the name's length (u32,
//! big-endian), the name's bytes, the value's length (u32, big-endian), the value's bytes. Names keep
//! their case; values are raw bytes.

use crate::{BusError, Header};

/// Encodes headers in order.
pub(crate) fn encode_headers(headers: &[Header]) -> Result<Vec<u8>, BusError> {
    let size: usize = headers
        .iter()
        .map(|h| 8 + h.name.len() + h.value.len())
        .sum();
    let mut out = Vec::with_capacity(size);
    for h in headers {
        put_chunk(&mut out, h.name.as_bytes())?;
        put_chunk(&mut out, &h.value)?;
    }
    Ok(out)
}

/// Decodes what [`encode_headers`] wrote.
pub(crate) fn decode_headers(mut bytes: &[u8]) -> Result<Vec<Header>, BusError> {
    let mut headers = Vec::new();
    while !bytes.is_empty() {
        let name = take_chunk(&mut bytes)?;
        let value = take_chunk(&mut bytes)?;
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| BusError::backend("stored header name is not UTF-8"))?;
        headers.push(Header {
            name,
            value: value.to_vec(),
        });
    }
    Ok(headers)
}

fn put_chunk(out: &mut Vec<u8>, chunk: &[u8]) -> Result<(), BusError> {
    let len = u32::try_from(chunk.len()).map_err(|_| {
        BusError::config(format!("header part of {} bytes is too large", chunk.len()))
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(chunk);
    Ok(())
}

fn take_chunk<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], BusError> {
    let corrupt = || BusError::backend("stored headers are truncated");
    let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(corrupt());
    }
    let (chunk, rest) = rest.split_at(len);
    *bytes = rest;
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_in_order_with_binary_values() {
        let headers = vec![
            Header {
                name: "Request_ID".into(),
                value: b"abc".to_vec(),
            },
            Header {
                name: "bin".into(),
                value: vec![0, 255, 10, 13],
            },
            Header {
                name: "Request_ID".into(),
                value: Vec::new(),
            },
        ];
        let encoded = encode_headers(&headers).unwrap();
        assert_eq!(decode_headers(&encoded).unwrap(), headers);
        assert!(decode_headers(&encoded[..encoded.len() - 1]).is_err());
        assert!(decode_headers(&[]).unwrap().is_empty());
    }
}
