//! The messages' words: a plain-text body and an HTML one. Every value a person typed (an
//! account's name, an address) is escaped in the HTML.

use crate::people::{Email, Role};

/// `text` with `&`, `<`, `>`, `"` and `'` written as entities.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// Subject, text and HTML of a message.
#[derive(Debug)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn html_page(paragraphs: &[String], link: &str, action: &str) -> String {
    let mut html = String::from("<!DOCTYPE html><html><body style=\"font-family: sans-serif\">");
    for p in paragraphs {
        html.push_str("<p>");
        html.push_str(p);
        html.push_str("</p>");
    }
    let link = escape_html(link);
    html.push_str(&format!("<p><a href=\"{link}\">{action}</a></p><p>{link}</p></body></html>"));
    html
}

/// The invitation to `account` as `role`, from `inviter` when known, with its `link`.
pub fn invitation(account: &str, role: Role, inviter: Option<&Email>, to: &Email, link: &str) -> Rendered {
    // A subject is one line: an account's name cannot break it (names hold no control
    // characters, and line breaks are folded away all the same).
    let account_line: String = account.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let who = inviter.map_or_else(|| "Someone".to_owned(), Email::to_string);
    let text = format!(
        "{who} invited {to} to join {account_line} on Keyward as {role}.\n\n\
         Accept the invitation (the link works once, for 7 days):\n{link}\n\n\
         If you did not expect this, ignore this message: nothing happens unless you open the link.\n"
    );
    let html = html_page(
        &[
            format!(
                "{} invited {} to join <strong>{}</strong> on Keyward as {}.",
                escape_html(&who),
                escape_html(to.as_str()),
                escape_html(&account_line),
                role
            ),
            "The link works once, for 7 days. If you did not expect this, ignore this message.".to_owned(),
        ],
        link,
        "Accept the invitation",
    );
    Rendered { subject: format!("Join {account_line} on Keyward"), text, html }
}

/// A password reset of the login `to`, with its `link`.
pub fn password_reset(to: &Email, link: &str) -> Rendered {
    let text = format!(
        "Someone asked to reset the Keyward password of {to}.\n\n\
         Choose a new password (the link works once, for 1 hour):\n{link}\n\n\
         If it was not you, ignore this message: your password stays as it is.\n"
    );
    let html = html_page(
        &[
            format!("Someone asked to reset the Keyward password of {}.", escape_html(to.as_str())),
            "The link works once, for 1 hour. If it was not you, ignore this message.".to_owned(),
        ],
        link,
        "Choose a new password",
    );
    Rendered { subject: "Reset your Keyward password".to_owned(), text, html }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_person_typed_is_escaped_in_the_html() {
        let to = Email::new("ada@acme.test").unwrap();
        let made = invitation("<script>alert(1)</script> & Co", Role::Admin, None, &to, "https://k.test/invitations/x");
        assert!(!made.html.contains("<script>"), "{}", made.html);
        assert!(made.html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co"), "{}", made.html);
        assert!(made.text.contains("https://k.test/invitations/x"));
        let folded = invitation("Evil\r\nBcc: x@y", Role::Member, None, &to, "l");
        assert!(!folded.subject.contains('\n') && !folded.subject.contains('\r'), "{}", folded.subject);
    }
}
