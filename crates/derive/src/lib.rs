//! Derive macros for `thingsdb-client`; use them through the client
//! (`thingsdb_client::{Thing, ThingsEnum, RoomEvent}`, on by default with
//! its `derive` feature), which holds the traits they implement and the
//! documentation with examples (`thingsdb_client::typed`).
//!
//! - `#[derive(Thing)]` on a struct with named fields: its ThingsDB type
//!   (`Thing`, `FieldType`) and serde in and out (do not derive serde's
//!   traits as well).
//! - `#[derive(ThingsEnum)]` on an enum of unit variants: a ThingsDB enum.
//! - `#[derive(RoomEvent)]` on an enum: room events by name, each
//!   variant's fields being the event's arguments in order.
//!
//! Attributes, all under `#[thingsdb(...)]`:
//!
//! | where | attribute | meaning |
//! |---|---|---|
//! | struct, enum | `name = "T"` | the ThingsDB name (default: the Rust name) |
//! | field | `rename = "x"` | the field's ThingsDB name |
//! | field | `skip` | not part of the type; `Default` when read |
//! | field | `id` | the thing's id (`#`), an `Option<u64>` |
//! | field | `spec = "int<0:10>"` | the definition, instead of the one from the Rust type |
//! | field | `renamed_from = "old"` | an earlier name, so a migration renames it |
//! | enum member | `rename = "X"` | the member's name |
//! | enum member | `value = 3` / `value = "x"` | the member's value (default: its name, or the Rust discriminant) |
//! | event variant | `rename = "new-msg"` | the event's name (default: the variant in snake_case) |

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote};
use syn::{parse_macro_input, Data, DeriveInput, Error, Fields, Result};

mod attrs;

use attrs::{int_value, snake_case, Attrs};

/// Derives `thingsdb_client::typed::Thing` (and `FieldType`, `Serialize`,
/// `Deserialize`) for a struct with named fields. See the crate docs.
#[proc_macro_derive(Thing, attributes(thingsdb))]
pub fn derive_thing(input: TokenStream) -> TokenStream {
    expand(input, thing)
}

/// Derives `thingsdb_client::typed::ThingsEnum` (and `FieldType`,
/// `Serialize`, `Deserialize`) for an enum of unit variants.
#[proc_macro_derive(ThingsEnum, attributes(thingsdb))]
pub fn derive_things_enum(input: TokenStream) -> TokenStream {
    expand(input, things_enum)
}

/// Derives `thingsdb_client::typed::TypedEvent` for an enum whose
/// variants are a room's events.
#[proc_macro_derive(RoomEvent, attributes(thingsdb))]
pub fn derive_room_event(input: TokenStream) -> TokenStream {
    expand(input, room_event)
}

/// Parses the item and runs one derive on it; errors become
/// `compile_error!`s at their spans.
fn expand(input: TokenStream, derive: fn(&DeriveInput) -> Result<Tokens>) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive(&input)
        .unwrap_or_else(|e| e.to_compile_error())
        .into()
}

fn no_generics(input: &DeriveInput, what: &str) -> Result<()> {
    if input.generics.params.is_empty() {
        Ok(())
    } else {
        Err(Error::new_spanned(
            &input.generics,
            format!("#[derive({what})] does not take generic types"),
        ))
    }
}

/// One field of a `Thing` struct.
struct Field {
    ident: syn::Ident,
    ty: syn::Type,
    /// The ThingsDB name.
    name: String,
    attrs: Attrs,
}

fn thing(input: &DeriveInput) -> Result<Tokens> {
    no_generics(input, "Thing")?;
    let ident = &input.ident;
    let cattrs = Attrs::parse(&input.attrs, &["name"])?;
    let type_name = cattrs
        .rename
        .map(|l| l.value())
        .unwrap_or_else(|| ident.to_string());
    let Data::Struct(data) = &input.data else {
        return Err(Error::new_spanned(
            ident,
            "#[derive(Thing)] is for structs with named fields",
        ));
    };
    let Fields::Named(named) = &data.fields else {
        return Err(Error::new_spanned(
            ident,
            "#[derive(Thing)] is for structs with named fields",
        ));
    };
    let mut fields = Vec::new();
    let mut id_field: Option<syn::Ident> = None;
    for f in &named.named {
        let attrs = Attrs::parse(&f.attrs, &["rename", "skip", "id", "spec", "renamed_from"])?;
        let fident = f
            .ident
            .clone()
            .ok_or_else(|| Error::new_spanned(f, "a named field"))?;
        if attrs.id {
            if id_field.is_some() {
                return Err(Error::new_spanned(f, "only one field can be the `id`"));
            }
            id_field = Some(fident.clone());
            continue;
        }
        let name = attrs
            .rename
            .as_ref()
            .map(|l| l.value())
            .unwrap_or_else(|| fident.to_string().trim_start_matches("r#").to_string());
        fields.push(Field {
            ident: fident,
            ty: f.ty.clone(),
            name,
            attrs,
        });
    }
    let t = quote!(::thingsdb_client::typed);
    let p = quote!(::thingsdb_client::typed::__private);
    let serde = quote!(#p::serde);
    let stored: Vec<&Field> = fields.iter().filter(|f| !f.attrs.skip).collect();

    // The type definition.
    let defs = stored.iter().map(|f| {
        let name = &f.name;
        let renamed: Vec<String> = f.attrs.renamed_from.iter().map(|l| l.value()).collect();
        let ty = &f.ty;
        let spec = match &f.attrs.spec {
            Some(s) => quote!(#t::Spec::from_definition(#s)),
            None => quote!(<#ty as #t::FieldType>::spec()),
        };
        quote!(#t::FieldDef {
            name: ::std::string::String::from(#name),
            spec: #spec,
            renamed_from: ::std::vec![#(::std::string::String::from(#renamed)),*],
        })
    });
    let deps = stored.iter().filter(|f| f.attrs.spec.is_none()).map(|f| {
        let ty = &f.ty;
        quote!(<#ty as #t::FieldType>::deps(&mut deps);)
    });
    let id_expr = match &id_field {
        Some(i) => quote!(self.#i),
        None => quote!(::std::option::Option::None),
    };

    // The code that makes an instance from a query variable.
    let builds = stored.iter().enumerate().map(|(i, f)| {
        let name = &f.name;
        let fi = &f.ident;
        let ty = &f.ty;
        let sep = if i == 0 {
            quote!()
        } else {
            quote!(out.push(',');)
        };
        let value = if f.attrs.spec.is_some() {
            quote!(out.push_str(&#p::join(path, #name));)
        } else {
            quote!(<#ty as #t::FieldType>::build(&self.#fi, &#p::join(path, #name), out);)
        };
        quote! {
            #sep
            out.push_str(#name);
            out.push(':');
            #value
        }
    });

    // serde out.
    let n_stored = stored.len();
    let ser_fields = stored.iter().map(|f| {
        let name = &f.name;
        let fi = &f.ident;
        quote!(#serde::ser::SerializeStruct::serialize_field(&mut st, #name, &self.#fi)?;)
    });

    // serde in.
    let slots: Vec<syn::Ident> = (0..stored.len())
        .map(|i| format_ident!("__f{}", i))
        .collect();
    let slot_decls = stored.iter().zip(&slots).map(|(f, s)| {
        let ty = &f.ty;
        quote!(let mut #s: ::std::option::Option<#ty> = ::std::option::Option::None;)
    });
    let arms = stored.iter().zip(&slots).map(|(f, s)| {
        let name = &f.name;
        quote! {
            #name => {
                if #s.is_some() {
                    return ::std::result::Result::Err(<__A::Error as #serde::de::Error>::duplicate_field(#name));
                }
                #s = ::std::option::Option::Some(#serde::de::MapAccess::next_value(&mut map)?);
            }
        }
    });
    let takes = stored.iter().zip(&slots).map(|(f, s)| {
        let name = &f.name;
        quote! {
            let #s = match #s {
                ::std::option::Option::Some(v) => v,
                ::std::option::Option::None => #p::missing_field(#name, #type_name, __id, __keys)?,
            };
        }
    });
    let mut inits: Vec<Tokens> = stored
        .iter()
        .zip(&slots)
        .map(|(f, s)| {
            let fi = &f.ident;
            quote!(#fi: #s)
        })
        .collect();
    for f in fields.iter().filter(|f| f.attrs.skip) {
        let fi = &f.ident;
        inits.push(quote!(#fi: ::std::default::Default::default()));
    }
    if let Some(i) = &id_field {
        inits.push(quote!(#i: __id));
    }
    let expecting = format!("a thing of type `{type_name}`");

    Ok(quote! {
        impl #t::Thing for #ident {
            const TYPE_NAME: &'static str = #type_name;
            fn type_def() -> #t::TypeDef {
                let mut deps = ::std::vec::Vec::new();
                #(#deps)*
                #t::TypeDef {
                    name: ::std::string::String::from(#type_name),
                    fields: ::std::vec![#(#defs),*],
                    deps,
                }
            }
            fn thing_id(&self) -> ::std::option::Option<u64> {
                #id_expr
            }
        }

        impl #t::FieldType for #ident {
            fn spec() -> #t::Spec {
                #t::Spec::Type(::std::string::String::from(#type_name))
            }
            fn deps(deps: &mut ::std::vec::Vec<#t::Dep>) {
                deps.push(#t::Dep::Type(#type_name, <#ident as #t::Thing>::type_def));
            }
            fn plain() -> bool {
                false
            }
            fn build(&self, path: &str, out: &mut ::std::string::String) {
                if let ::std::option::Option::Some(id) = #id_expr {
                    #p::build_ref(out, #type_name, id);
                    return;
                }
                out.push_str(#type_name);
                out.push_str("({");
                #(#builds)*
                out.push_str("})");
            }
        }

        impl #serde::Serialize for #ident {
            fn serialize<__S: #serde::Serializer>(&self, s: __S) -> ::std::result::Result<__S::Ok, __S::Error> {
                let mut st = #serde::Serializer::serialize_struct(s, #type_name, #n_stored)?;
                #(#ser_fields)*
                #serde::ser::SerializeStruct::end(st)
            }
        }

        impl<'de> #serde::Deserialize<'de> for #ident {
            fn deserialize<__D: #serde::Deserializer<'de>>(d: __D) -> ::std::result::Result<Self, __D::Error> {
                struct __Visitor;
                impl<'de> #serde::de::Visitor<'de> for __Visitor {
                    type Value = #ident;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str(#expecting)
                    }
                    fn visit_map<__A: #serde::de::MapAccess<'de>>(self, mut map: __A) -> ::std::result::Result<#ident, __A::Error> {
                        #(#slot_decls)*
                        let mut __id: ::std::option::Option<u64> = ::std::option::Option::None;
                        let mut __keys: usize = 0;
                        while let ::std::option::Option::Some(key) = #serde::de::MapAccess::next_key::<#p::Key>(&mut map)? {
                            __keys += 1;
                            match key.as_str() {
                                #(#arms)*
                                "#" => {
                                    __id = #serde::de::MapAccess::next_value(&mut map)?;
                                }
                                _ => {
                                    #serde::de::MapAccess::next_value::<#serde::de::IgnoredAny>(&mut map)?;
                                }
                            }
                        }
                        #(#takes)*
                        ::std::result::Result::Ok(#ident { #(#inits),* })
                    }
                }
                #serde::Deserializer::deserialize_map(d, __Visitor)
            }
        }
    })
}

fn things_enum(input: &DeriveInput) -> Result<Tokens> {
    no_generics(input, "ThingsEnum")?;
    let ident = &input.ident;
    let cattrs = Attrs::parse(&input.attrs, &["name"])?;
    let enum_name = cattrs
        .rename
        .map(|l| l.value())
        .unwrap_or_else(|| ident.to_string());
    let Data::Enum(data) = &input.data else {
        return Err(Error::new_spanned(
            ident,
            "#[derive(ThingsEnum)] is for enums",
        ));
    };
    if data.variants.is_empty() {
        return Err(Error::new_spanned(
            ident,
            "a ThingsDB enum needs at least one member",
        ));
    }
    // (variant, member name, value)
    let mut members: Vec<(syn::Ident, String, syn::Lit)> = Vec::new();
    for v in &data.variants {
        if !matches!(v.fields, Fields::Unit) {
            return Err(Error::new_spanned(
                v,
                "#[derive(ThingsEnum)] takes unit variants only",
            ));
        }
        let attrs = Attrs::parse(&v.attrs, &["rename", "value"])?;
        let name = attrs
            .rename
            .as_ref()
            .map(|l| l.value())
            .unwrap_or_else(|| v.ident.to_string());
        let value = match (attrs.value, &v.discriminant) {
            (Some(l), _) => l,
            (
                None,
                Some((
                    _,
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Int(i),
                        ..
                    }),
                )),
            ) => syn::Lit::Int(i.clone()),
            (None, Some((_, e))) => {
                return Err(Error::new_spanned(
                    e,
                    "use an integer literal, or #[thingsdb(value = ...)]",
                ))
            }
            (None, None) => syn::Lit::Str(syn::LitStr::new(&name, v.ident.span())),
        };
        members.push((v.ident.clone(), name, value));
    }
    let ints = members
        .iter()
        .filter(|m| matches!(m.2, syn::Lit::Int(_)))
        .count();
    if ints != 0 && ints != members.len() {
        return Err(Error::new_spanned(
            ident,
            "a ThingsDB enum's values are all strings or all integers",
        ));
    }
    let t = quote!(::thingsdb_client::typed);
    let p = quote!(::thingsdb_client::typed::__private);
    let serde = quote!(#p::serde);
    let is_int = ints != 0;
    let mut defs = Vec::new();
    let mut ser_arms = Vec::new();
    let mut name_arms = Vec::new();
    let mut str_arms = Vec::new();
    let mut int_arms = Vec::new();
    for (v, name, value) in &members {
        match value {
            syn::Lit::Int(i) => {
                let n = int_value(i)?;
                defs.push(quote!(#t::EnumMember { name: ::std::string::String::from(#name), value: #t::EnumValue::Int(#n) }));
                ser_arms.push(quote!(#ident::#v => #serde::Serializer::serialize_i64(s, #n)));
                int_arms.push(quote!(#n => ::std::result::Result::Ok(#ident::#v)));
            }
            syn::Lit::Str(sv) => {
                defs.push(quote!(#t::EnumMember { name: ::std::string::String::from(#name), value: #t::EnumValue::Str(::std::string::String::from(#sv)) }));
                ser_arms.push(quote!(#ident::#v => #serde::Serializer::serialize_str(s, #sv)));
                str_arms.push(quote!(#sv => ::std::result::Result::Ok(#ident::#v)));
            }
            _ => unreachable!("checked when read"),
        }
        name_arms.push(quote!(#name => ::std::result::Result::Ok(#ident::#v)));
    }
    let expecting = format!("a member of enum `{enum_name}`");
    // Strings: the value (string enums), else the member's name (`*` fields).
    let visit_str = quote! {
        fn visit_str<__E: #serde::de::Error>(self, v: &str) -> ::std::result::Result<#ident, __E> {
            match v {
                #(#str_arms,)*
                _ => match v {
                    #(#name_arms,)*
                    _ => ::std::result::Result::Err(__E::invalid_value(#serde::de::Unexpected::Str(v), &self)),
                },
            }
        }
    };
    let visit_int = if is_int {
        quote! {
            fn visit_i64<__E: #serde::de::Error>(self, v: i64) -> ::std::result::Result<#ident, __E> {
                match v {
                    #(#int_arms,)*
                    _ => ::std::result::Result::Err(__E::invalid_value(#serde::de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_u64<__E: #serde::de::Error>(self, v: u64) -> ::std::result::Result<#ident, __E> {
                match i64::try_from(v) {
                    ::std::result::Result::Ok(v) => self.visit_i64(v),
                    ::std::result::Result::Err(_) => ::std::result::Result::Err(__E::invalid_value(#serde::de::Unexpected::Unsigned(v), &self)),
                }
            }
        }
    } else {
        quote!()
    };
    Ok(quote! {
        impl #t::ThingsEnum for #ident {
            const ENUM_NAME: &'static str = #enum_name;
            fn enum_def() -> #t::EnumDef {
                #t::EnumDef {
                    name: ::std::string::String::from(#enum_name),
                    members: ::std::vec![#(#defs),*],
                }
            }
        }

        impl #t::FieldType for #ident {
            fn spec() -> #t::Spec {
                #t::Spec::Enum(::std::string::String::from(#enum_name))
            }
            fn deps(deps: &mut ::std::vec::Vec<#t::Dep>) {
                deps.push(#t::Dep::Enum(#enum_name, <#ident as #t::ThingsEnum>::enum_def));
            }
            fn plain() -> bool {
                false
            }
            fn build(&self, path: &str, out: &mut ::std::string::String) {
                #p::build_enum(out, #enum_name, path);
            }
        }

        impl #serde::Serialize for #ident {
            fn serialize<__S: #serde::Serializer>(&self, s: __S) -> ::std::result::Result<__S::Ok, __S::Error> {
                match self {
                    #(#ser_arms,)*
                }
            }
        }

        impl<'de> #serde::Deserialize<'de> for #ident {
            fn deserialize<__D: #serde::Deserializer<'de>>(d: __D) -> ::std::result::Result<Self, __D::Error> {
                struct __Visitor;
                impl<'de> #serde::de::Visitor<'de> for __Visitor {
                    type Value = #ident;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str(#expecting)
                    }
                    #visit_str
                    #visit_int
                }
                #serde::Deserializer::deserialize_any(d, __Visitor)
            }
        }
    })
}

fn room_event(input: &DeriveInput) -> Result<Tokens> {
    no_generics(input, "RoomEvent")?;
    let ident = &input.ident;
    Attrs::parse(&input.attrs, &[])?;
    let Data::Enum(data) = &input.data else {
        return Err(Error::new_spanned(
            ident,
            "#[derive(RoomEvent)] is for enums",
        ));
    };
    let t = quote!(::thingsdb_client::typed);
    let p = quote!(::thingsdb_client::typed::__private);
    let serde = quote!(#p::serde);
    let mut names = Vec::new();
    let mut decode_arms = Vec::new();
    let mut name_arms = Vec::new();
    let mut ser_arms = Vec::new();
    for v in &data.variants {
        let attrs = Attrs::parse(&v.attrs, &["rename"])?;
        let name = attrs
            .rename
            .as_ref()
            .map(|l| l.value())
            .unwrap_or_else(|| snake_case(&v.ident.to_string()));
        if names.contains(&name) {
            return Err(Error::new_spanned(
                v,
                format!("two variants are event `{name}`"),
            ));
        }
        names.push(name.clone());
        let vi = &v.ident;
        let tys: Vec<&syn::Type> = v.fields.iter().map(|f| &f.ty).collect();
        let binds: Vec<syn::Ident> = (0..tys.len()).map(|i| format_ident!("__a{}", i)).collect();
        let n = tys.len();
        let (pattern, construct) = match &v.fields {
            Fields::Unit => (quote!(#ident::#vi), quote!(#ident::#vi)),
            Fields::Unnamed(_) => (
                quote!(#ident::#vi(#(#binds),*)),
                quote!(#ident::#vi(#(#binds),*)),
            ),
            Fields::Named(named) => {
                let fids: Vec<&syn::Ident> = named
                    .named
                    .iter()
                    .filter_map(|f| f.ident.as_ref())
                    .collect();
                (
                    quote!(#ident::#vi { #(#fids: #binds),* }),
                    quote!(#ident::#vi { #(#fids: #binds),* }),
                )
            }
        };
        let decode = if n == 0 {
            quote!(::std::result::Result::Ok(#construct))
        } else {
            quote! {
                e.decode::<(#(#tys,)*)>().map(|(#(#binds,)*)| #construct)
            }
        };
        decode_arms.push(quote!(#name => ::std::option::Option::Some(#decode)));
        let unit_pattern = match &v.fields {
            Fields::Unit => quote!(#ident::#vi),
            Fields::Unnamed(_) => quote!(#ident::#vi(..)),
            Fields::Named(_) => quote!(#ident::#vi { .. }),
        };
        name_arms.push(quote!(#unit_pattern => #name));
        ser_arms.push(quote! {
            #[allow(unused_variables)]
            #pattern => {
                let mut tup = #serde::Serializer::serialize_tuple(s, #n)?;
                #(#serde::ser::SerializeTuple::serialize_element(&mut tup, #binds)?;)*
                #serde::ser::SerializeTuple::end(tup)
            }
        });
    }
    if names.is_empty() {
        return Err(Error::new_spanned(
            ident,
            "#[derive(RoomEvent)] needs at least one variant",
        ));
    }
    Ok(quote! {
        impl #t::TypedEvent for #ident {
            fn names() -> &'static [&'static str] {
                &[#(#names),*]
            }
            fn from_emitted(e: &::thingsdb_client::Emitted) -> ::std::option::Option<::std::result::Result<Self, ::thingsdb_client::Error>> {
                match e.event.as_str() {
                    #(#decode_arms,)*
                    _ => ::std::option::Option::None,
                }
            }
            fn name(&self) -> &'static str {
                match self {
                    #(#name_arms,)*
                }
            }
            fn serialize_args<__S: #serde::Serializer>(&self, s: __S) -> ::std::result::Result<__S::Ok, __S::Error> {
                match self {
                    #(#ser_arms)*
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn err(r: Result<Tokens>) -> String {
        match r {
            Ok(t) => panic!("expected an error, got {t}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn things_refuse_what_they_cannot_be() {
        assert!(err(thing(&parse_quote!(
            struct A<T> {
                x: T,
            }
        )))
        .contains("generic"));
        assert!(err(thing(&parse_quote!(
            struct A(i64);
        )))
        .contains("named fields"));
        assert!(err(thing(&parse_quote!(
            enum A {
                X,
            }
        )))
        .contains("named fields"));
        assert!(err(thing(&parse_quote!(
            struct A {
                #[thingsdb(id)]
                a: Option<u64>,
                #[thingsdb(id)]
                b: Option<u64>,
            }
        )))
        .contains("only one field"));
        assert!(err(thing(&parse_quote!(
            struct A {
                #[thingsdb(bogus)]
                a: i64,
            }
        )))
        .contains("unknown thingsdb attribute"));
        assert!(err(thing(&parse_quote!(
            #[thingsdb(rename = "B")]
            struct A {
                a: i64,
            }
        )))
        .contains("expected one of: name"));
        assert!(thing(&parse_quote!(
            #[thingsdb(name = "B")]
            struct A {
                #[thingsdb(rename = "b", renamed_from = "c")]
                a: i64,
                #[thingsdb(skip)]
                s: u8,
            }
        ))
        .is_ok());
    }

    #[test]
    fn enums_refuse_what_they_cannot_be() {
        assert!(err(things_enum(&parse_quote!(
            enum E {
                A(i64),
            }
        )))
        .contains("unit variants"));
        assert!(err(things_enum(&parse_quote!(
            enum E {}
        )))
        .contains("at least one member"));
        assert!(err(things_enum(&parse_quote!(
            enum E {
                A = 1,
                B,
            }
        )))
        .contains("all strings or all integers"));
        assert!(err(things_enum(&parse_quote!(
            enum E {
                #[thingsdb(value = 1.5)]
                A,
            }
        )))
        .contains("a string or an integer"));
        assert!(err(things_enum(&parse_quote!(
            struct S {
                a: i64,
            }
        )))
        .contains("is for enums"));
        assert!(things_enum(&parse_quote!(
            enum E {
                #[thingsdb(value = 3)]
                A,
                B = 4,
            }
        ))
        .is_ok());
    }

    #[test]
    fn events_refuse_what_they_cannot_be() {
        assert!(err(room_event(&parse_quote!(
            enum E {
                A,
                #[thingsdb(rename = "a")]
                B,
            }
        )))
        .contains("two variants are event `a`"));
        assert!(err(room_event(&parse_quote!(
            enum E {}
        )))
        .contains("at least one variant"));
        assert!(err(room_event(&parse_quote!(
            struct S;
        )))
        .contains("is for enums"));
        assert!(room_event(&parse_quote!(
            enum E {
                A { x: i64 },
                B(String, u8),
                C,
            }
        ))
        .is_ok());
    }
}
