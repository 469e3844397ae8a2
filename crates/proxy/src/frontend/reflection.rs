//! gRPC server reflection (`grpc.reflection.v1` and `v1alpha`) answered from the user
//! function's descriptors: the served services, files by name, by symbol and by extension, each
//! with its imports. The two versions share one answer: their messages are the same on the
//! wire, so v1alpha requests are re-read as v1 ones.
//!
//! Files are sent as prost-reflect encodes them, which keeps custom options (`entity_key`,
//! `google.api.http`) that prost-types' messages would drop.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt as _};
use prost::Message;
use prost_reflect::{DescriptorPool, FileDescriptor};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::protocol::REFLECTION_DESCRIPTOR_SET;
use crate::protocol::grpc::reflection::{v1, v1alpha};

/// The reflection service names.
pub const SERVICES: [&str; 2] =
    ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/// The answering side, shared by both versions.
#[derive(Debug, Clone)]
pub struct Reflection {
    pool: DescriptorPool,
    services: Vec<String>,
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl Reflection {
    /// Reflection over `pool` listing `services` (and itself).
    pub fn new(pool: &DescriptorPool, services: impl IntoIterator<Item = String>) -> Self {
        let mut pool = pool.clone();
        // A user set that already holds these files keeps its own; reflection of reflection is
        // then answered from them.
        if let Err(error) = pool.decode_file_descriptor_set(REFLECTION_DESCRIPTOR_SET) {
            tracing::debug!(%error, "the reflection protocol's descriptors were not added");
        }
        let mut services: Vec<String> = services.into_iter().chain(SERVICES.map(str::to_string)).collect();
        services.sort();
        services.dedup();
        Self { pool, services }
    }

    /// The file defining `symbol`: a service, method, message, field, enum, enum value or
    /// extension, by full name (no leading dot).
    fn file_of_symbol(&self, symbol: &str) -> Option<FileDescriptor> {
        let pool = &self.pool;
        if let Some(service) = pool.get_service_by_name(symbol) {
            return Some(service.parent_file());
        }
        if let Some(message) = pool.get_message_by_name(symbol) {
            return Some(message.parent_file());
        }
        if let Some(enumeration) = pool.get_enum_by_name(symbol) {
            return Some(enumeration.parent_file());
        }
        if let Some(extension) = pool.get_extension_by_name(symbol) {
            return Some(extension.parent_file());
        }
        let (parent, name) = symbol.rsplit_once('.')?;
        if let Some(service) = pool.get_service_by_name(parent) {
            return service.methods().any(|m| m.name() == name).then(|| service.parent_file());
        }
        if let Some(message) = pool.get_message_by_name(parent) {
            let found =
                message.get_field_by_name(name).is_some() || message.oneofs().any(|o| o.name() == name);
            return found.then(|| message.parent_file());
        }
        // Enum values are scoped beside their enum.
        pool.all_enums().find(|e| e.values().any(|v| v.full_name() == symbol)).map(|e| e.parent_file())
    }

    /// `file` then every file it imports, transitively, each once.
    fn with_dependencies(file: FileDescriptor) -> v1::FileDescriptorResponse {
        let mut seen = HashSet::new();
        let mut queue = vec![file];
        let mut out = Vec::new();
        while let Some(file) = queue.pop() {
            if !seen.insert(file.name().to_string()) {
                continue;
            }
            out.push(file.encode_to_vec());
            queue.extend(file.dependencies().collect::<Vec<_>>().into_iter().rev());
        }
        v1::FileDescriptorResponse { file_descriptor_proto: out }
    }

    fn error(code: Code, message: String) -> v1::server_reflection_response::MessageResponse {
        v1::server_reflection_response::MessageResponse::ErrorResponse(v1::ErrorResponse {
            error_code: code as i32,
            error_message: message,
        })
    }

    /// Answers one request.
    pub fn answer(&self, request: v1::ServerReflectionRequest) -> v1::ServerReflectionResponse {
        use v1::server_reflection_request::MessageRequest as Ask;
        use v1::server_reflection_response::MessageResponse as Tell;
        let files = |file: Option<FileDescriptor>, what: String| match file {
            Some(file) => Tell::FileDescriptorResponse(Self::with_dependencies(file)),
            None => Self::error(Code::NotFound, what),
        };
        let response = match &request.message_request {
            Some(Ask::ListServices(_)) => Tell::ListServicesResponse(v1::ListServiceResponse {
                service: self
                    .services
                    .iter()
                    .map(|name| v1::ServiceResponse { name: name.clone() })
                    .collect(),
            }),
            Some(Ask::FileByFilename(name)) => {
                files(self.pool.get_file_by_name(name), format!("file {name:?} is not known"))
            }
            Some(Ask::FileContainingSymbol(symbol)) => {
                let symbol = symbol.trim_start_matches('.');
                files(self.file_of_symbol(symbol), format!("symbol {symbol:?} is not known"))
            }
            Some(Ask::FileContainingExtension(ask)) => {
                let containing = ask.containing_type.trim_start_matches('.');
                let file = self
                    .pool
                    .all_extensions()
                    .find(|e| {
                        e.containing_message().full_name() == containing
                            && i64::from(e.number()) == i64::from(ask.extension_number)
                    })
                    .map(|e| e.parent_file());
                files(file, format!("extension {} of {containing:?} is not known", ask.extension_number))
            }
            Some(Ask::AllExtensionNumbersOfType(name)) => {
                let name = name.trim_start_matches('.');
                match self.pool.get_message_by_name(name) {
                    Some(message) => Tell::AllExtensionNumbersResponse(v1::ExtensionNumberResponse {
                        base_type_name: message.full_name().to_string(),
                        extension_number: message
                            .extensions()
                            .filter_map(|e| i32::try_from(e.number()).ok())
                            .collect(),
                    }),
                    None => Self::error(Code::NotFound, format!("type {name:?} is not known")),
                }
            }
            None => Self::error(Code::InvalidArgument, "the reflection request is empty".to_string()),
        };
        v1::ServerReflectionResponse {
            valid_host: request.host.clone(),
            original_request: Some(request),
            message_response: Some(response),
        }
    }
}

/// The same bytes read as another message type (v1 and v1alpha share their wire format).
fn recode<A: Message, B: Message + Default>(message: &A) -> B {
    B::decode(message.encode_to_vec().as_slice()).unwrap_or_default()
}

#[tonic::async_trait]
impl v1::server_reflection_server::ServerReflection for Reflection {
    type ServerReflectionInfoStream = ResponseStream<v1::ServerReflectionResponse>;

    async fn server_reflection_info(
        &self,
        request: Request<Streaming<v1::ServerReflectionRequest>>,
    ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
        let this = Arc::new(self.clone());
        let answers = request.into_inner().map(move |asked| asked.map(|asked| this.answer(asked)));
        Ok(Response::new(Box::pin(answers)))
    }
}

#[tonic::async_trait]
impl v1alpha::server_reflection_server::ServerReflection for Reflection {
    type ServerReflectionInfoStream = ResponseStream<v1alpha::ServerReflectionResponse>;

    async fn server_reflection_info(
        &self,
        request: Request<Streaming<v1alpha::ServerReflectionRequest>>,
    ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
        let this = Arc::new(self.clone());
        let answers =
            request.into_inner().map(move |asked| asked.map(|asked| recode(&this.answer(recode(&asked)))));
        Ok(Response::new(Box::pin(answers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use v1::server_reflection_request::MessageRequest as Ask;
    use v1::server_reflection_response::MessageResponse as Tell;

    fn reflection() -> Reflection {
        let pool = DescriptorPool::decode(crate::protocol::FILE_DESCRIPTOR_SET).expect("loads");
        Reflection::new(&pool, ["cloudstate.EntityDiscovery".to_string()])
    }

    fn ask(reflection: &Reflection, ask: Ask) -> Tell {
        let request = v1::ServerReflectionRequest { host: String::new(), message_request: Some(ask) };
        reflection.answer(request).message_response.expect("an answer")
    }

    fn file_names(tell: Tell) -> Vec<String> {
        let Tell::FileDescriptorResponse(files) = tell else { panic!("not files: {tell:?}") };
        files
            .file_descriptor_proto
            .iter()
            .map(|bytes| {
                prost_types::FileDescriptorProto::decode(bytes.as_slice())
                    .expect("decodes")
                    .name()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn lists_services_and_finds_files() {
        let r = reflection();
        let Tell::ListServicesResponse(list) = ask(&r, Ask::ListServices(String::new())) else { panic!() };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["cloudstate.EntityDiscovery", SERVICES[0], SERVICES[1]]);
        let names =
            file_names(ask(&r, Ask::FileContainingSymbol("cloudstate.EntityDiscovery.discover".into())));
        assert_eq!(names.first().map(String::as_str), Some("cloudstate/entity.proto"));
        assert!(names.iter().any(|n| n == "google/protobuf/any.proto"), "{names:?}");
        let names = file_names(ask(&r, Ask::FileByFilename("google/api/annotations.proto".into())));
        assert_eq!(
            names,
            ["google/api/annotations.proto", "google/api/http.proto", "google/protobuf/descriptor.proto"]
        );
        for symbol in [
            "cloudstate.Command",
            "cloudstate.Command.entity_id",
            "cloudstate.ClientAction.action",
            "google.api.http",
        ] {
            assert!(
                matches!(ask(&r, Ask::FileContainingSymbol(symbol.into())), Tell::FileDescriptorResponse(_)),
                "{symbol}"
            );
        }
        let names = file_names(ask(&r, Ask::FileContainingSymbol(SERVICES[0].into())));
        assert_eq!(names, ["grpc/reflection/v1/reflection.proto"]);
    }

    #[test]
    fn extensions_and_errors() {
        let r = reflection();
        let Tell::AllExtensionNumbersResponse(numbers) =
            ask(&r, Ask::AllExtensionNumbersOfType("google.protobuf.MethodOptions".into()))
        else {
            panic!()
        };
        assert!(numbers.extension_number.contains(&72_295_728), "{numbers:?}");
        let names = file_names(ask(
            &r,
            Ask::FileContainingExtension(v1::ExtensionRequest {
                containing_type: "google.protobuf.MethodOptions".into(),
                extension_number: 72_295_728,
            }),
        ));
        assert_eq!(names.first().map(String::as_str), Some("google/api/annotations.proto"));
        for wrong in [
            Ask::FileByFilename("nope.proto".into()),
            Ask::FileContainingSymbol("no.Such".into()),
            Ask::FileContainingSymbol("cloudstate.Command.nope".into()),
            Ask::AllExtensionNumbersOfType("no.Such".into()),
        ] {
            let Tell::ErrorResponse(error) = ask(&r, wrong) else { panic!("an error") };
            assert_eq!(error.error_code, Code::NotFound as i32);
        }
    }
}
