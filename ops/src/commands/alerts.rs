//! `alerts`: raise an alert (`send`) and forward alerts to the SOC's syslog collector
//! (`forward`). The alert document, the stream and the renderings are in `crate::alerts`, the
//! syslog transports in `crate::syslog`; here are the two procedures.

mod forward;
mod send;

use super::Context;
use crate::cli::{AlertsArgs, AlertsCommand};
use crate::error::OpsError;

/// Runs `alerts send` or `alerts forward`.
pub fn run(ctx: &Context, args: &AlertsArgs) -> Result<u8, OpsError> {
    match &args.command {
        AlertsCommand::Send(a) => send::run(ctx, a).map(|()| 0),
        AlertsCommand::Forward(a) => forward::run(ctx, a).map(|()| 0),
    }
}
