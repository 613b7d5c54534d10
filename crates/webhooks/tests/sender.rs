//! The HTTP sender against real sockets: a name that resolves to a private address is
//! refused at connection time (not only a literal one when the URL is written), a
//! redirect is an answer and is not followed, an endless answer is cut, a silent one
//! times out, and the headers are the Standard Webhooks ones.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Instant,
};

use keyward_domain::{
    MessageId, SeededRandom,
    key_service::{SEND_TIMEOUT, SendResult, WebhookRequest, WebhookSender},
    webhook::WebhookUrl,
};
use keyward_webhooks::HttpSender;

/// A listener that answers every request with `answer` (after reading it), and keeps the
/// request heads it saw.
fn listener(answer: impl Fn(&mut std::net::TcpStream) + Send + Sync + 'static) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let (seen, answer) = (seen.clone(), answer.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                seen.lock().unwrap().push(head);
                let mut stream = stream;
                answer(&mut stream);
            });
        }
    });
    (port, heads)
}

fn request(url: &str) -> WebhookRequest {
    WebhookRequest {
        url: WebhookUrl::parse(url, true).unwrap(),
        message_id: MessageId::generate(time::OffsetDateTime::now_utc(), &SeededRandom::new(1)),
        timestamp: 1_700_000_000,
        signature: "v1,c2lnbmF0dXJl".into(),
        body: r#"{"type":"key.created"}"#.into(),
    }
}

fn reply(stream: &mut std::net::TcpStream, text: &str) {
    let _ = stream.write_all(text.as_bytes());
}

#[tokio::test]
async fn a_name_that_resolves_to_a_private_address_is_refused_unless_allowed() {
    let (port, heads) = listener(|s| reply(s, "HTTP/1.1 204 No Content\r\n\r\n"));
    // `localhost` passes when the URL is written with private destinations allowed; the
    // sender of an instance that does not allow them still refuses what it resolves to.
    let url = format!("http://localhost:{port}/hook");
    let refused = HttpSender::new(false).send(request(&url)).await;
    assert!(matches!(&refused, SendResult::Failed(reason) if reason.contains("private")), "{refused:?}");
    assert!(heads.lock().unwrap().is_empty(), "no connection was made");

    let sent = HttpSender::new(true).send(request(&url)).await;
    assert_eq!(sent, SendResult::Answered { status: 204, body: String::new() });
    let head = heads.lock().unwrap()[0].to_ascii_lowercase();
    for header in [
        "content-type: application/json",
        "webhook-timestamp: 1700000000",
        "webhook-signature: v1,c2lnbmF0dXJl",
        "webhook-id: msg_",
        "user-agent: keyward-webhooks/",
    ] {
        assert!(head.contains(&header.to_ascii_lowercase()), "{header} in {head}");
    }
}

#[tokio::test]
async fn a_redirect_is_an_answer_and_is_not_followed() {
    let (target, followed) = listener(|s| reply(s, "HTTP/1.1 204 No Content\r\n\r\n"));
    let location = format!("http://127.0.0.1:{target}/elsewhere");
    let (port, _) = listener(move |s| {
        reply(s, &format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"));
    });
    let answer = HttpSender::new(true).send(request(&format!("http://127.0.0.1:{port}/"))).await;
    assert!(matches!(answer, SendResult::Answered { status: 302, .. }), "{answer:?}");
    assert!(followed.lock().unwrap().is_empty(), "the redirect was not followed");
}

#[tokio::test]
async fn an_endless_answer_is_cut_and_a_silent_receiver_times_out() {
    let (port, _) = listener(|s| {
        reply(s, "HTTP/1.1 200 OK\r\n\r\n");
        let chunk = vec![b'a'; 64 * 1024];
        while s.write_all(&chunk).is_ok() {}
    });
    let answer = HttpSender::new(true).send(request(&format!("http://127.0.0.1:{port}/"))).await;
    match answer {
        SendResult::Answered { status: 200, body } => assert!(body.len() <= 64 * 1024, "{}", body.len()),
        other => panic!("{other:?}"),
    }

    let (port, _) = listener(|_| std::thread::sleep(std::time::Duration::from_secs(60)));
    let started = Instant::now();
    let answer = HttpSender::new(true).send(request(&format!("http://127.0.0.1:{port}/"))).await;
    assert!(matches!(answer, SendResult::Failed(_)), "{answer:?}");
    assert!(started.elapsed() < SEND_TIMEOUT * 2, "bounded by the send timeout");
}
