//! Who hears about a token: its owner's e-mail address and the channels that take
//! its messages (the administrators' and the owner's own). One place, so that a
//! token with several owners changes only this.

use crate::store::{ChannelRecord, Store};

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

/// [`recipients`], for any token: a service account's messages go to all of its active
/// owners (their e-mail addresses, one message to all, and their own channels) rather
/// than to the account itself. `can_mail`: whether e-mail is sent at all.
pub async fn recipients_of(
    store: &Store,
    owner: &str,
    email: Option<&str>,
    can_mail: bool,
    channels: &[ChannelRecord],
) -> Recipients {
    let audience = match store.service_account_audience(owner).await {
        Ok(audience) => audience,
        Err(e) => {
            tracing::warn!(error = %e, user = %owner, "could not read a service account's owners; its own address is used");
            None
        }
    };
    let Some(owners) = audience else {
        return recipients(owner, email.filter(|_| can_mail), channels);
    };
    let emails: Vec<&str> = owners
        .iter()
        .filter_map(|(_, e)| e.as_deref())
        .filter(|e| !e.trim().is_empty())
        .collect();
    Recipients {
        email: (can_mail && !emails.is_empty()).then(|| emails.join(", ")),
        channels: channels
            .iter()
            .filter(|c| {
                c.owner
                    .as_deref()
                    .is_none_or(|o| o == owner || owners.iter().any(|(name, _)| name == o))
            })
            .cloned()
            .collect(),
    }
}
