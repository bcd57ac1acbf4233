//! The gRPC face of the catalogue: authorise → validate → call the domain and store → map errors.

use std::pin::Pin;

use civic_kit::auth::{Caller, Role};
use civic_kit::error::{Error, Result};
use civic_kit::idempotency::{self, Begun, RequestKey, check_etag};
use civic_kit::{events, filter, names, page, time};
use civic_proto::catalogue::catalogue_service_server::CatalogueService;
use civic_proto::catalogue::service_item::{Category, HandlingMode, State};
use civic_proto::catalogue::watch_service_items_response::ChangeType;
use civic_proto::catalogue::*;
use futures::Stream;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::domain::{self, ItemName};
use crate::store::{self, ListFilter, StoredItem};
use crate::{Catalogue, search};

/// Who may draft, change, publish and retire items, and see drafts.
const EDITORS: &[Role] = &[Role::Admin, Role::Cadre];

/// Event topics, one per change the lobby screen shows.
pub const TOPIC_PUBLISHED: &str = "catalogue.item.published";
/// A published item changed: a new revision.
pub const TOPIC_CHANGED: &str = "catalogue.item.changed";
/// A published item was retired.
pub const TOPIC_RETIRED: &str = "catalogue.item.retired";

impl Catalogue {
    pub(crate) fn caller<T>(&self, request: &Request<T>) -> Result<Caller> {
        self.auth.caller(request.metadata())
    }

    /// Whether `caller` may see every item of `street`, drafts included.
    fn is_editor(caller: &Caller, street: &str) -> bool {
        caller.principal().is_some_and(|p| p.in_street(street) && EDITORS.iter().any(|r| p.has_role(*r)))
    }

    /// Reads an item the caller may see; an unseen item is NOT_FOUND, as if it did not exist.
    async fn visible_item(&self, caller: &Caller, name: &ItemName) -> Result<StoredItem> {
        let key = name.to_string();
        let item = match self.items.get(&key) {
            Some(item) => Some(item),
            None => {
                let item = store::get(self.db.reader(), name).await?;
                if let Some(item) = &item {
                    self.items.put(item);
                }
                item
            }
        };
        match item {
            Some(item) if item.state == State::Published || Self::is_editor(caller, &name.street) => Ok(item),
            _ => Err(Error::not_found(name.to_string())),
        }
    }

    /// Runs a lifecycle or content change of one item under the request's idempotency key,
    /// writing the event for `topic` when the change is public.
    async fn change_item(
        &self,
        key: &RequestKey,
        name: &ItemName,
        etag: &str,
        change: impl FnOnce(&mut StoredItem) -> Result<Option<&'static str>>,
    ) -> Result<ServiceItem> {
        let mut m = match idempotency::begin::<ServiceItem>(&self.db, key).await? {
            Begun::Replayed(saved) => return Ok(saved),
            Begun::Fresh(m) => m,
        };
        let tx = m.tx();
        {
            let mut item = store::get_in(tx, name).await?.ok_or_else(|| Error::not_found(name.to_string()))?;
            check_etag(etag, item.version, &name.to_string())?;
            let topic = change(&mut item)?;
            item.version += 1;
            item.updated_at = time::now_text();
            // Publishing and changing a published item make a revision; retiring does not.
            if topic.is_some_and(|t| t != TOPIC_RETIRED) {
                item.revision += 1;
                item.publish_time = Some(item.updated_at.clone());
                store::insert_revision(tx, &item).await?;
            }
            store::save(tx, &item).await?;
            let out = item.to_proto();
            if let Some(topic) = topic {
                events::enqueue(tx, topic, &out.name, &out).await?;
            }
            m.commit(&out).await?;
            self.items.put(&item);
            self.relay.notify();
            Ok(out)
        }
    }
}

fn enum_name<E>(
    field: &str,
    value: i32,
    parse: fn(i32) -> Option<E>,
    name: fn(&E) -> &'static str,
) -> Result<&'static str> {
    match value {
        0 => Ok(""),
        v => parse(v).map(|e| name(&e)).ok_or_else(|| Error::invalid(field, "is not a known value")),
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchServiceItemsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl CatalogueService for Catalogue {
    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_service_item(&self, request: Request<GetServiceItemRequest>) -> Result<Response<ServiceItem>, Status> {
        let caller = self.caller(&request)?;
        let name = ItemName::parse("name", &request.get_ref().name)?;
        Ok(Response::new(self.visible_item(&caller, &name).await?.to_proto()))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_service_items(
        &self,
        request: Request<ListServiceItemsRequest>,
    ) -> Result<Response<ListServiceItemsResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = names::parse_street("parent", &req.parent)?;
        let size = page::page_size(req.page_size, 50, 1000)?;
        let terms = filter::parse(&req.filter, &["category", "handling_mode", "state"])?;
        let mut list_filter = ListFilter::default();
        for term in &terms {
            let known = match term.field.as_str() {
                "category" => Category::from_str_name(&term.value).map(|c| c.as_str_name()),
                "handling_mode" => HandlingMode::from_str_name(&term.value).map(|m| m.as_str_name()),
                _ => State::from_str_name(&term.value).map(|s| s.as_str_name()),
            };
            let value = known.ok_or_else(|| {
                Error::invalid("filter", format!("`{}` is not a value of {}", term.value, term.field))
            })?;
            match term.field.as_str() {
                "category" => list_filter.category = value,
                "handling_mode" => list_filter.handling_mode = value,
                _ => list_filter.state = value,
            }
        }
        if !Self::is_editor(&caller, street) {
            match list_filter.state {
                "" => list_filter.state = State::Published.as_str_name(),
                "PUBLISHED" => {}
                _ => {
                    caller.require()?;
                    return Err(
                        Error::permission_denied("only the street's editors see drafts and retired items").into()
                    );
                }
            }
        }
        let query = format!(
            "ListServiceItems|{}|{}|{}|{}",
            street, list_filter.state, list_filter.category, list_filter.handling_mode
        );
        let after = self.pages.decode_position(&req.page_token, &query, 1)?.map(|p| p[0].clone()).unwrap_or_default();
        let mut items = store::list(self.db.reader(), street, &list_filter, &after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut items, size, |i| vec![i.name.item.clone()]);
        Ok(Response::new(ListServiceItemsResponse {
            service_items: items.iter().map(StoredItem::to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_service_item(
        &self,
        request: Request<CreateServiceItemRequest>,
    ) -> Result<Response<ServiceItem>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = names::parse_street("parent", &req.parent)?;
        caller.require_role_in(street, EDITORS)?;
        let key = RequestKey::new(caller.key(), "CreateServiceItem", &req.request_id, &req)?;
        let mut item = req.service_item.clone().ok_or_else(|| Error::invalid("service_item", "is required"))?;
        let mut violations = civic_kit::error::Violations::new();
        let id = if req.service_item_id.is_empty() {
            format!("i{}", uuid::Uuid::new_v4().simple())[..17].to_owned()
        } else {
            if !names::is_valid_id(&req.service_item_id) {
                violations.add(
                    "service_item_id",
                    "must be 1 to 63 lowercase letters, digits or hyphens, starting with a letter",
                );
            }
            req.service_item_id.clone()
        };
        violations.check(domain::validate("service_item", &mut item));
        violations.finish()?;
        let name = ItemName { street: street.to_owned(), item: id };
        let mut m = match idempotency::begin::<ServiceItem>(&self.db, &key).await? {
            Begun::Replayed(saved) => return Ok(Response::new(saved)),
            Begun::Fresh(m) => m,
        };
        let stored = store::insert(m.tx(), &name, &item).await?;
        let out = stored.to_proto();
        m.commit(&out).await?;
        self.items.put(&stored);
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all)]
    async fn update_service_item(
        &self,
        request: Request<UpdateServiceItemRequest>,
    ) -> Result<Response<ServiceItem>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let patch = req.service_item.clone().ok_or_else(|| Error::invalid("service_item", "is required"))?;
        let name = ItemName::parse("service_item.name", &patch.name)?;
        caller.require_role_in(&name.street, EDITORS)?;
        let key = RequestKey::new(caller.key(), "UpdateServiceItem", &req.request_id, &req)?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        // Check the mask and the patch before touching the store, so bad input writes nothing.
        domain::apply_mask(&mut ServiceItem::default(), &patch, &paths)?;
        let out = self
            .change_item(&key, &name, &patch.etag, |item| {
                domain::apply_mask(&mut item.content, &patch, &paths)?;
                domain::validate("service_item", &mut item.content)?;
                Ok((item.state == State::Published).then_some(TOPIC_CHANGED))
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn delete_service_item(
        &self,
        request: Request<DeleteServiceItemRequest>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let name = ItemName::parse("name", &req.name)?;
        caller.require_role_in(&name.street, EDITORS)?;
        let key = RequestKey::new(caller.key(), "DeleteServiceItem", &req.request_id, &req)?;
        let mut m = match idempotency::begin::<pbjson_types::Empty>(&self.db, &key).await? {
            Begun::Replayed(saved) => return Ok(Response::new(saved)),
            Begun::Fresh(m) => m,
        };
        let item = store::get_in(m.tx(), &name).await?.ok_or_else(|| Error::not_found(name.to_string()))?;
        check_etag(&req.etag, item.version, &name.to_string())?;
        if item.state != State::Draft {
            return Err(Error::failed_precondition(
                "NOT_A_DRAFT",
                "only drafts can be deleted; retire a published item instead",
            )
            .into());
        }
        store::delete(m.tx(), &name).await?;
        m.commit(&pbjson_types::Empty {}).await?;
        self.items.invalidate(&name.to_string(), item.version + 1);
        Ok(Response::new(pbjson_types::Empty {}))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn publish_service_item(
        &self,
        request: Request<PublishServiceItemRequest>,
    ) -> Result<Response<ServiceItem>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let name = ItemName::parse("name", &req.name)?;
        caller.require_role_in(&name.street, EDITORS)?;
        let key = RequestKey::new(caller.key(), "PublishServiceItem", &req.request_id, &req)?;
        let out = self
            .change_item(&key, &name, &req.etag, |item| {
                item.state = domain::transition(item.state, State::Published)?;
                Ok(Some(TOPIC_PUBLISHED))
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn retire_service_item(
        &self,
        request: Request<RetireServiceItemRequest>,
    ) -> Result<Response<ServiceItem>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let name = ItemName::parse("name", &req.name)?;
        caller.require_role_in(&name.street, EDITORS)?;
        let key = RequestKey::new(caller.key(), "RetireServiceItem", &req.request_id, &req)?;
        let out = self
            .change_item(&key, &name, &req.etag, |item| {
                item.state = domain::transition(item.state, State::Retired)?;
                Ok(Some(TOPIC_RETIRED))
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn search_service_items(
        &self,
        request: Request<SearchServiceItemsRequest>,
    ) -> Result<Response<SearchServiceItemsResponse>, Status> {
        let req = request.into_inner();
        let mut v = civic_kit::error::Violations::new();
        let street = v.check(names::parse_street("parent", &req.parent));
        let size = v.check(page::page_size(req.page_size, 20, 100));
        let category =
            v.check(enum_name("category", req.category, |v| Category::try_from(v).ok(), Category::as_str_name));
        let mode = v.check(enum_name(
            "handling_mode",
            req.handling_mode,
            |v| HandlingMode::try_from(v).ok(),
            HandlingMode::as_str_name,
        ));
        let terms = search::terms(&req.query);
        if terms.is_empty() {
            v.add("query", "must hold at least one word");
        }
        v.finish()?;
        let (Some(street), Some(size), Some(category), Some(mode)) = (street, size, category, mode) else {
            return Err(Error::invalid("request", "invalid").into());
        };
        let query = format!("SearchServiceItems|{street}|{category}|{mode}|{}", terms.join(" "));
        let position = self.pages.decode_position(&req.page_token, &query, 2)?;
        let longest = terms.iter().max_by_key(|t| t.len()).cloned().unwrap_or_default();
        let filter = ListFilter { state: "PUBLISHED", category, handling_mode: mode };
        let candidates = store::search_candidates(self.db.reader(), street, &longest, &filter).await?;
        let mut scored: Vec<(u32, StoredItem)> = candidates
            .into_iter()
            .filter_map(|item| {
                let c = &item.content;
                let fields = search::Fields {
                    title: &c.title,
                    title_en: &c.title_en,
                    keywords: &c.keywords,
                    summary: &c.summary,
                };
                search::score(&terms, &fields).map(|s| (s, item))
            })
            .collect();
        // Best first; equal scores in name order, so pages are stable.
        scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.item.cmp(&b.1.name.item)));
        let start = match position {
            None => 0,
            Some(p) => {
                let (score, id) = (p[0].parse::<u32>().unwrap_or(0), p[1].as_str());
                // The first item after the position in (score desc, id asc) order.
                scored
                    .iter()
                    .position(|(s, i)| *s < score || (*s == score && i.name.item.as_str() > id))
                    .unwrap_or(scored.len())
            }
        };
        let page: Vec<&(u32, StoredItem)> = scored.iter().skip(start).take(size).collect();
        let next_page_token = match (scored.len() > start + size, page.last()) {
            (true, Some((s, i))) => self.pages.encode(&query, &[s.to_string(), i.name.item.clone()]),
            _ => String::new(),
        };
        Ok(Response::new(SearchServiceItemsResponse {
            service_items: page.iter().map(|(_, i)| i.to_proto()).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn list_service_item_revisions(
        &self,
        request: Request<ListServiceItemRevisionsRequest>,
    ) -> Result<Response<ListServiceItemRevisionsResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let name = ItemName::parse("name", &req.name)?;
        let size = page::page_size(req.page_size, 50, 1000)?;
        self.visible_item(&caller, &name).await?;
        let query = format!("ListServiceItemRevisions|{name}");
        let before = match self.pages.decode_position(&req.page_token, &query, 1)? {
            Some(p) => {
                p[0].parse::<i64>().map_err(|_| Error::invalid("page_token", "is not a token this query returned"))?
            }
            None => 0,
        };
        let mut revisions = store::list_revisions(self.db.reader(), &name, before, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut revisions, size, |r| {
            vec![r.service_item.as_ref().map(|i| i.revision).unwrap_or(0).to_string()]
        });
        Ok(Response::new(ListServiceItemRevisionsResponse { revisions, next_page_token }))
    }

    type WatchServiceItemsStream = WatchStream;

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn watch_service_items(
        &self,
        request: Request<WatchServiceItemsRequest>,
    ) -> Result<Response<Self::WatchServiceItemsStream>, Status> {
        let street = names::parse_street("parent", &request.get_ref().parent)?.to_owned();
        // Listen before reading the snapshot, so no change falls between the two.
        let mut listener = self.bus.listen("catalogue.item.").await?;
        let published = ListFilter { state: "PUBLISHED", ..Default::default() };
        let mut snapshot = Vec::new();
        let mut after = String::new();
        loop {
            let page = store::list(self.db.reader(), &street, &published, &after, 500).await?;
            let Some(last) = page.last() else { break };
            after = last.name.item.clone();
            snapshot.extend(page.iter().map(StoredItem::to_proto));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let shutdown = self.shutdown.clone();
        let prefix = format!("streets/{street}/items/");
        tokio::spawn(async move {
            let message = |change_type: ChangeType, item: Option<ServiceItem>| {
                Ok(WatchServiceItemsResponse { change_type: change_type as i32, service_item: item })
            };
            // Events come at least once, from every replica's relay, and may repeat what the
            // snapshot holds: send each item's versions in order, each once.
            let version = |item: &ServiceItem| item.etag.trim_matches('"').parse::<i64>().unwrap_or(0);
            let mut sent: std::collections::HashMap<String, i64> =
                snapshot.iter().map(|i| (i.name.clone(), version(i))).collect();
            for item in snapshot {
                if tx.send(message(ChangeType::Existing, Some(item))).await.is_err() {
                    return;
                }
            }
            if tx.send(message(ChangeType::Current, None)).await.is_err() {
                return;
            }
            loop {
                let stop = shutdown.clone();
                let event = tokio::select! {
                    event = listener.recv() => event,
                    _ = tx.closed() => return,
                    _ = stop.wait() => return,
                };
                let event = match event {
                    Some(event) => event,
                    None => {
                        let _ = tx
                            .send(Err(Status::unavailable("the change feed fell behind or closed; watch again")))
                            .await;
                        return;
                    }
                };
                if !event.key.starts_with(&prefix) {
                    continue;
                }
                let change = match event.topic.as_str() {
                    TOPIC_PUBLISHED => ChangeType::Published,
                    TOPIC_CHANGED => ChangeType::Changed,
                    TOPIC_RETIRED => ChangeType::Retired,
                    _ => continue,
                };
                let Ok(item) = ServiceItem::decode(event.payload.as_slice()) else {
                    tracing::warn!(event_id = %event.id, "undecodable catalogue event skipped");
                    continue;
                };
                let v = version(&item);
                if sent.get(&item.name).is_some_and(|last| *last >= v) {
                    continue;
                }
                sent.insert(item.name.clone(), v);
                if tx.send(message(change, Some(item))).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
