//! Ids as clients send them: positive integers below 2^53 (safe in JavaScript and Swift), the
//! bound the domain keeps too.

use super::AppError;

/// The largest id on the wire.
pub const MAX_WIRE_ID: u64 = events::MAX_ID;

/// Checks an id that came in a body, a query or a socket payload.
pub fn wire_id(id: u64, what: &str) -> Result<u64, AppError> {
    if (1..=MAX_WIRE_ID).contains(&id) {
        Ok(id)
    } else {
        Err(AppError::validation(format!(
            "{what} must be a positive integer below 2^53"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_one_to_two_to_the_53_less_one_pass() {
        assert_eq!(wire_id(1, "id"), Ok(1));
        assert_eq!(wire_id(MAX_WIRE_ID, "id"), Ok(MAX_WIRE_ID));
        assert!(wire_id(0, "id").is_err());
        assert!(wire_id(MAX_WIRE_ID + 1, "id").is_err());
    }
}
