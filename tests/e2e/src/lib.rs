//! gateway-e2e
