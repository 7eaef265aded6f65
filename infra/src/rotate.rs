//! `rotate`: the back-channel key operator's tool.
//!
//! `rotate jwks` reads the back-channel secret's JSON on stdin (as `aws secretsmanager
//! get-secret-value ... --query SecretString --output text` prints it) and prints the public JWK
//! Set to publish for `get-jwks` (its own secret, `BackchannelJwksSecretArn`): the public halves
//! of the current and next keys, never a private one. `rotate jwks --from-env` does the same from
//! the local variables (`LOGOUT_SIGNING_KEY_PEM`, `LOGOUT_KEY_ID`, `LOGOUT_NEXT_SIGNING_KEY_PEM`,
//! `LOGOUT_NEXT_KEY_ID`), for the local stack. Errors name the field at fault, never a value.

use std::io::Read;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["jwks"] => {
            let mut raw = String::new();
            std::io::stdin().read_to_string(&mut raw)?;
            print_jwks(&raw)
        }
        ["jwks", "--from-env"] => {
            let var = |name: &str| std::env::var(name).ok();
            let secret = serde_json::json!({
                "signing_key_pem": var("LOGOUT_SIGNING_KEY_PEM").ok_or("LOGOUT_SIGNING_KEY_PEM is not set")?,
                "key_id": var("LOGOUT_KEY_ID"),
                "next_signing_key_pem": var("LOGOUT_NEXT_SIGNING_KEY_PEM"),
                "next_key_id": var("LOGOUT_NEXT_KEY_ID"),
            });
            print_jwks(&secret.to_string())
        }
        _ => Err("usage: rotate jwks [--from-env]   (the back-channel secret's JSON on stdin)".into()),
    }
}

fn print_jwks(secret: &str) -> Result<(), Box<dyn std::error::Error>> {
    let set = active_sessions::logout::public_jwks_of_secret(secret)?;
    let body = serde_json::to_string(&set)?;
    // What get-jwks will accept: public EC keys only, each with its kid.
    active_sessions::jwks::PublishedJwks::parse(&body, "rotate jwks")?;
    println!("{body}");
    Ok(())
}
