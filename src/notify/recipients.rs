//! Who hears about a token: its owner's e-mail address and the channels that take
//! its messages (the administrators' and the owner's own). One place, so that a
//! token with several owners changes only this.

use crate::store::ChannelRecord;

/// Where one token's messages go.
#[derive(Debug, Clone, Default)]
pub struct Recipients {
    /// `None`: no address is known for the owner.
    pub email: Option<String>,
    pub channels: Vec<ChannelRecord>,
}

impl Recipients {
    /// Whether the message reaches anyone.
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.channels.is_empty()
    }
}

/// The recipients of a message about a token of `owner`, whose e-mail address is
/// `email`, out of every channel there is (read once per pass).
pub fn recipients(owner: &str, email: Option<&str>, channels: &[ChannelRecord]) -> Recipients {
    Recipients {
        email: email.map(str::to_string),
        channels: channels
            .iter()
            .filter(|c| c.owner.as_deref().is_none_or(|o| o == owner))
            .cloned()
            .collect(),
    }
}
