//! Who is asking: the bearer token in a stream's gRPC metadata, by the HTTP
//! API's rules (`serve::api`): exactly one `authorization` entry, scheme
//! `Bearer` in any case, a token the live tokens file knows.
//!
//! A stream lives for days, so the token is checked again on every request,
//! every index change and every [`RECHECK`]: a token removed from the file
//! ends the streams that presented it (UNAUTHENTICATED), one whose scope
//! changed ends those that now ask for another mesh (PERMISSION_DENIED).

use std::time::Duration;

use tonic::metadata::MetadataMap;
use tonic::Status;
use zeroize::Zeroizing;

use super::names::ResourceName;
use crate::tokens::{TokenScope, Tokens};

/// How often an idle stream checks that its token still works.
pub(super) const RECHECK: Duration = Duration::from_secs(5);

/// An authenticated client.
pub(super) struct Caller {
    /// The presented token, kept to check it again (wiped on drop).
    token: Zeroizing<String>,
    scope: TokenScope,
}

impl Caller {
    /// Authenticates a call from its metadata.
    pub(super) fn from_metadata(metadata: &MetadataMap, tokens: &Tokens) -> Result<Caller, Status> {
        let mut values = metadata.get_all("authorization").iter();
        let Some(value) = values.next() else {
            return Err(Status::unauthenticated(
                "missing bearer token: send `authorization: Bearer <token>` (Envoy: initial_metadata)",
            ));
        };
        if values.next().is_some() {
            // Two credentials are ambiguous: a proxy may have checked the other.
            return Err(Status::invalid_argument(
                "more than one authorization entry: send exactly one",
            ));
        }
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| Zeroizing::new(token.trim_matches(' ').to_string()));
        let Some(token) = token else {
            return Err(Status::unauthenticated(
                "expected `authorization: Bearer <token>`",
            ));
        };
        let scope = tokens
            .authorize(&token)
            .cloned()
            .ok_or_else(|| Status::unauthenticated("invalid or unknown bearer token"))?;
        Ok(Caller { token, scope })
    }

    /// The token's scope now.
    pub(super) fn scope(&self) -> &TokenScope {
        &self.scope
    }

    /// Checks the token against the current tokens file.
    pub(super) fn recheck(&mut self, tokens: &Tokens) -> Result<(), Status> {
        match tokens.authorize(&self.token) {
            Some(scope) => {
                self.scope = scope.clone();
                Ok(())
            }
            None => Err(Status::unauthenticated(
                "the bearer token is no longer in the tokens file",
            )),
        }
    }

    /// Whether the token may read every named resource.
    pub(super) fn authorize<'a>(
        &self,
        names: impl IntoIterator<Item = &'a ResourceName>,
    ) -> Result<(), Status> {
        match names.into_iter().find(|n| !self.scope.allows(n.scope())) {
            None => Ok(()),
            Some(name) => Err(Status::permission_denied(format!(
                "token of scope \"{}\" cannot access secrets of mesh \"{}\"",
                self.scope,
                name.scope().mesh_name().unwrap_or_default()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn tokens() -> (Tokens, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let admin = crate::tokens::create(&path, &TokenScope::Admin).unwrap();
        let pay = crate::tokens::create(&path, &TokenScope::Mesh("payments".into())).unwrap();
        (
            Tokens::load(&path).unwrap(),
            admin.to_string(),
            pay.to_string(),
        )
    }

    fn md(values: &[&str]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for v in values {
            m.append("authorization", v.parse().unwrap());
        }
        m
    }

    #[test]
    fn bearer_tokens_authenticate_like_the_api() {
        let (t, admin, pay) = tokens();
        let c = Caller::from_metadata(&md(&[&format!("Bearer {admin}")]), &t).unwrap();
        assert_eq!(c.scope(), &TokenScope::Admin);
        let c = Caller::from_metadata(&md(&[&format!("bearer  {pay} ")]), &t).unwrap();
        assert_eq!(c.scope(), &TokenScope::Mesh("payments".into()));
        let code = |m: MetadataMap| Caller::from_metadata(&m, &t).err().unwrap().code();
        assert_eq!(code(md(&[])), Code::Unauthenticated);
        assert_eq!(code(md(&["Bearer mst_nope"])), Code::Unauthenticated);
        assert_eq!(code(md(&[&format!("Basic {pay}")])), Code::Unauthenticated);
        assert_eq!(code(md(&[&pay])), Code::Unauthenticated);
        let two = [format!("Bearer {pay}"), format!("Bearer {admin}")];
        assert_eq!(code(md(&[&two[0], &two[1]])), Code::InvalidArgument);
    }

    #[test]
    fn a_mesh_token_reads_only_its_mesh_and_a_removed_token_stops() {
        let (t, _, pay) = tokens();
        let mut c = Caller::from_metadata(&md(&[&format!("Bearer {pay}")]), &t).unwrap();
        let own = ResourceName::parse("payments/tls").unwrap();
        let other = ResourceName::parse("billing/tls").unwrap();
        assert!(c.authorize([&own]).is_ok());
        let err = c.authorize([&own, &other]).unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert!(err.message().contains("billing"), "{}", err.message());
        assert!(c.recheck(&t).is_ok());
        let err = c.recheck(&Tokens::default()).unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
}
