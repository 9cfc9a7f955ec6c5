//! The SHA-256 state a verification saves on the upload row between its
//! steps (SPEC 7.3: a multipart upload's bytes are hashed in steps of one
//! invocation each), and restores in the next: the state's bytes behind a
//! tag of the format, so a state of another `sha2` release is never read.

use sha2::Sha256;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};

/// The tag in front of every saved state.
pub const FORMAT: &[u8] = b"sha2-0.11/Sha256:";

/// The state of `hasher` as the row keeps it.
pub fn save(hasher: &Sha256) -> Vec<u8> {
    let mut state = FORMAT.to_vec();
    state.extend_from_slice(&hasher.serialize());
    state
}

/// The hasher a saved state goes on with: none for a state of another
/// format (or none at all).
pub fn restore(state: &[u8]) -> Option<Sha256> {
    let state = state.strip_prefix(FORMAT)?;
    let state = SerializedState::<Sha256>::try_from(state).ok()?;
    Sha256::deserialize(&state).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn a_hash_state_saved_midway_goes_on_to_the_digest_of_the_whole() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut first = Sha256::new();
        first.update(&data[..640]);
        let mut resumed = restore(&save(&first)).unwrap();
        resumed.update(&data[640..]);
        assert_eq!(resumed.finalize(), Sha256::digest(&data));
    }

    #[test]
    fn a_state_of_another_format_is_not_read() {
        let saved = save(&Sha256::new());
        assert!(restore(&saved[1..]).is_none());
        assert!(restore(b"sha2-0.10/Sha256:whatever").is_none());
        assert!(restore(FORMAT).is_none());
    }
}
