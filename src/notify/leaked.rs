//! The e-mail that tells a token's owner it was reported leaked and revoked: plain and
//! small, sent through the SMTP server item notifications use, when they are set up.

use super::smtp::Mail;
use super::Notifier;
use crate::core::text::escape_html;
use crate::store::TokenRecord;

impl Notifier {
    /// Tells the owner of `token` that it was revoked as leaked. `Ok(false)`: nothing
    /// to send through (notifications off, no SMTP server, or no address for the user).
    pub async fn tell_leaked(&self, token: &TokenRecord) -> anyhow::Result<bool> {
        let settings = self.store.notify_settings().await?;
        if super::pass::idle_reason(&settings).is_some() {
            return Ok(false);
        }
        let Some(server_id) = settings.smtp_server_id.as_deref() else {
            return Ok(false);
        };
        let Some(to) = self
            .store
            .user(&token.username)
            .await?
            .and_then(|u| u.email)
            .filter(|e| !e.is_empty())
        else {
            return Ok(false);
        };
        let item = self.store.smtp_server(server_id).await?;
        let mailer = self.mailer(&item).map_err(|f| anyhow::anyhow!(f.message))?;
        let text = format!(
            "Your personal access token \"{name}\" was found where it should not be and has \
             been revoked. Anything that used it will now be refused.\n\n\
             Create a new token on the Access tokens page and put it where the old one was \
             used, keeping it out of code, logs and chats.\n",
            name = token.name
        );
        let html = format!(
            "<p>Your personal access token <b>{name}</b> was found where it should not be \
             and has been revoked. Anything that used it will now be refused.</p>\
             <p>Create a new token on the Access tokens page and put it where the old one \
             was used, keeping it out of code, logs and chats.</p>",
            name = escape_html(&token.name)
        );
        let mail = Mail {
            to,
            subject: format!("Personal access token \"{}\" revoked as leaked", token.name),
            html,
            text,
        };
        mailer
            .send(&mail)
            .await
            .map_err(|f| anyhow::anyhow!(f.message))?;
        Ok(true)
    }
}
