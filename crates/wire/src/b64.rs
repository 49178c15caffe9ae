use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes carried as standard base64 in JSON. Decoding rejects anything not canonical base64.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct B64(pub Vec<u8>);

impl B64 {
    pub fn into_inner(self) -> Vec<u8> {
        self.0
    }
}

impl From<Vec<u8>> for B64 {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl std::ops::Deref for B64 {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

// Debug prints the length only: these are ciphertexts and keys, and never belong in logs.
impl std::fmt::Debug for B64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "B64({} bytes)", self.0.len())
    }
}

impl Serialize for B64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map(B64)
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

/// In the OpenAPI document: a base64 string.
impl utoipa::PartialSchema for B64 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .content_encoding("base64")
            .into()
    }
}

impl utoipa::ToSchema for B64 {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let json = serde_json::to_string(&B64(vec![0, 1, 2, 255])).unwrap();
        assert_eq!(json, "\"AAEC/w==\"");
        let back: B64 = serde_json::from_str(&json).unwrap();
        assert_eq!(back.0, vec![0, 1, 2, 255]);
        assert!(serde_json::from_str::<B64>("\"not base64!\"").is_err());
        assert!(serde_json::from_str::<B64>("42").is_err());
    }
}
