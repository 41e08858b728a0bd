//! The [`Handler`] trait: what a module does.

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;

/// A module's behaviour: how it takes its configuration and answers
/// requests.
///
/// The [`Module`](crate::Module) runtime decodes each MODULE_CONF into
/// [`Handler::Config`] and each MODULE_REQ into [`Handler::Request`] with
/// serde (MessagePack, so a ThingsDB thing is a map: a struct with named
/// fields reads it, and unknown keys such as `module`, `deep`, `load` and
/// `#` are ignored unless the struct denies them), and encodes
/// [`Handler::Response`] with named fields, so a struct reaches ThingsDB as
/// a thing.
///
/// Requests run concurrently, each in its own task, so the handler is
/// shared (`&self`): keep mutable state behind a lock or in atomics.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use thingsdb_module::{Error, Handler};
///
/// struct Greeter;
///
/// #[derive(Deserialize)]
/// struct Hello { name: String }
///
/// #[derive(Serialize)]
/// struct Greeting { text: String }
///
/// impl Handler for Greeter {
///     type Config = serde::de::IgnoredAny;
///     type Request = Hello;
///     type Response = Greeting;
///
///     async fn configure(&self, _config: Self::Config) -> Result<(), Error> {
///         Ok(())
///     }
///
///     async fn handle(&self, req: Hello) -> Result<Greeting, Error> {
///         if req.name.is_empty() {
///             return Err(Error::value("`name` must not be empty"));
///         }
///         Ok(Greeting { text: format!("Hello, {}!", req.name) })
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// The configuration given with `new_module(name, file, conf)` or
    /// `set_module_conf(name, conf)` (packed by the node three levels
    /// deep, without thing ids). Use [`serde::de::IgnoredAny`] for a
    /// module without configuration.
    type Config: DeserializeOwned + Send + 'static;
    /// A request: the thing given to `future({module: 'NAME', ...})`.
    type Request: DeserializeOwned + Send + 'static;
    /// A result. The node gives it to ThingsDB code as `mpdata`, or as a
    /// value when the request said `load: true`.
    type Response: Serialize + Send + 'static;

    /// Takes a configuration: called when the module starts if the node
    /// has one for it, and again on every `set_module_conf`. `Ok` answers
    /// MODULE_CONF_OK; an error (or a configuration that does not decode
    /// into [`Handler::Config`]) is logged and answers MODULE_CONF_ERR,
    /// after which the node refuses calls to the module until a new
    /// configuration is accepted.
    ///
    /// Configurations are taken one at a time, in the order they came,
    /// while requests keep running. A node that has no configuration for a
    /// module sends none, and sends requests right away.
    fn configure(&self, config: Self::Config) -> impl Future<Output = Result<(), Error>> + Send;

    /// Answers one request. An error reaches the calling ThingsDB code
    /// with its code and message.
    fn handle(
        &self,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, Error>> + Send;

    /// How long this request may take; `None` (the default) means the
    /// [`Module::timeout`](crate::Module::timeout). A request still
    /// running then is dropped and answered with a `cancelled` error.
    fn timeout(&self, request: &Self::Request) -> Option<Duration> {
        let _ = request;
        None
    }
}
