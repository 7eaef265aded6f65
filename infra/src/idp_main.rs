//! `stand-in-idp`: the local stack's identity provider (`local_stack::idp`).
//!
//! Usage (the key: an EC P-256 private key, PKCS#8 PEM):
//!   stand-in-idp serve --key FILE --issuer URL --port PORT      serve /jwks.json (and /sign/...) on 127.0.0.1
//!   stand-in-idp gtr --key FILE --issuer URL --audience URL     print a GTR bearer JWT
//!   stand-in-idp set --key FILE --issuer URL --audience URL --event session-revoked|credential-change|account-disabled|verification
//!                    [--email ADDRESS]                          print a Security Event Token

use std::sync::Arc;

use local_stack::idp::StandInIdp;

const KID: &str = "stand-in-idp-1";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let need = |name: &str| arg(name).ok_or_else(|| format!("stand-in-idp: {name} is required"));
    let key = std::fs::read_to_string(need("--key")?)?;
    let idp = StandInIdp::new(&key, KID, &need("--issuer")?)?;
    match args.get(1).map(String::as_str) {
        Some("serve") => {
            let port: u16 = need("--port")?.parse()?;
            let (port, task) = Arc::new(idp).serve(port).await?;
            eprintln!("stand-in-idp: JWKS on http://127.0.0.1:{port}/jwks.json");
            task.await?;
        }
        Some("gtr") => println!("{}", idp.gtr_token(&need("--audience")?)),
        Some("set") => {
            let (aud, event) = (need("--audience")?, need("--event")?);
            let set = idp.named_set(&aud, &event, &arg("--email").unwrap_or_default());
            println!("{}", set.ok_or_else(|| format!("stand-in-idp: unknown event {event}"))?);
        }
        _ => return Err("usage: stand-in-idp serve|gtr|set --key FILE --issuer URL ...".into()),
    }
    Ok(())
}
