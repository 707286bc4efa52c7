//! Syslog: rendering messages ([`format`], pure), and sending them to a collector over UDP,
//! TCP, TLS or RELP ([`sink`], [`relp`]). Knows nothing of alerts or the bus.

pub mod format;
pub mod relp;
pub mod sink;
