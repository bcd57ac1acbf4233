//! The gRPC face of the catalogue: authorise → validate → call the domain and store → map to the
//! wire. The mapping between domain items and `ServiceItem` messages lives here.

use civic_kit::auth::{Caller, Role};
use civic_kit::error::{Error, Result, Violations};
use civic_kit::events::Event;
use civic_kit::idempotency::{RequestKey, check_etag, etag, version_of};
use civic_kit::names::{Id, StreetId};
use civic_kit::watch::{self, Update, WatchStream};
use civic_kit::write::Change;
use civic_kit::{filter, page, time};
use civic_proto::catalogue::catalogue_service_server::CatalogueService;
use civic_proto::catalogue::service_item::{Category, HandlingMode, State};
use civic_proto::catalogue::watch_service_items_response::ChangeType;
use civic_proto::catalogue::*;
use tonic::{Request, Response, Status};

use crate::domain::{Content, Happened, Item, ItemName, ItemState};
use crate::store::{self, ListFilter, Revision};
use crate::{Catalogue, search};

/// Who may draft, change, publish and retire items, and see drafts.
const EDITORS: &[Role] = &[Role::Admin, Role::Cadre];

/// An item as the API shows it: its content and the output-only fields.
pub(crate) fn to_wire(item: &Item) -> ServiceItem {
    ServiceItem {
        name: item.name.to_string(),
        state: wire_state(item.state) as i32,
        revision: item.revision,
        etag: etag(item.version),
        create_time: time::text_to_timestamp(&item.created_at),
        update_time: time::text_to_timestamp(&item.updated_at),
        publish_time: item.publish_time.as_deref().and_then(time::text_to_timestamp),
        ..item.content.message().clone()
    }
}

fn wire_state(state: ItemState) -> State {
    match state {
        ItemState::Draft => State::Draft,
        ItemState::Published => State::Published,
        ItemState::Retired => State::Retired,
    }
}

/// A published revision as the API shows it.
fn revision_to_wire(name: &ItemName, revision: &Revision) -> ServiceItemRevision {
    let published = time::text_to_timestamp(&revision.publish_time);
    ServiceItemRevision {
        name: format!("{}", crate::domain::RevisionName { item: name.clone(), revision: revision.revision }),
        service_item: Some(ServiceItem {
            name: name.to_string(),
            state: State::Published as i32,
            revision: revision.revision,
            publish_time: published,
            ..revision.content.message().clone()
        }),
        publish_time: published,
    }
}

/// Writes the event of what a change did, carrying the item as it is now.
pub(crate) async fn emit(change: &mut Change, happened: Happened, item: &ServiceItem) -> Result<()> {
    let service_item = Some(item.clone());
    match happened {
        Happened::Published => change.emit(&item.name, &ServiceItemPublished { service_item }).await,
        Happened::Changed => change.emit(&item.name, &ServiceItemChanged { service_item }).await,
        Happened::Retired => change.emit(&item.name, &ServiceItemRetired { service_item }).await,
    }
}

impl Catalogue {
    pub(crate) fn caller<T>(&self, request: &Request<T>) -> Result<Caller> {
        self.auth.caller(request.metadata())
    }

    /// Whether `caller` may see every item of `street`, drafts included.
    fn is_editor(caller: &Caller, street: &StreetId) -> bool {
        caller.principal().is_some_and(|p| p.in_street(street.as_str()) && EDITORS.iter().any(|r| p.has_role(*r)))
    }

    /// Reads an item the caller may see; an unseen item is NOT_FOUND, as if it did not exist.
    async fn visible_item(&self, caller: &Caller, name: &ItemName) -> Result<Item> {
        let key = name.to_string();
        let item = match self.items.get(&key) {
            Some(item) => Some(item),
            None => {
                let item = store::get(self.writer.db().reader(), name).await?;
                if let Some(item) = &item {
                    self.items.put(item);
                }
                item
            }
        };
        match item {
            Some(item) if item.state == ItemState::Published || Self::is_editor(caller, name.street()) => Ok(item),
            _ => Err(Error::not_found(name.to_string())),
        }
    }

    /// Runs a change of one item under the request's key: reads it, checks the etag, lets
    /// `change` apply the domain's rule, writes it (and a revision, and the event, when the
    /// change made them), and keeps the new version in the cache.
    async fn change_item(
        &self,
        key: &RequestKey,
        name: &ItemName,
        sent_etag: &str,
        change: impl FnOnce(&mut Item, &str) -> Result<Option<Happened>>,
    ) -> Result<ServiceItem> {
        let mut written = None;
        let out = self
            .writer
            .write(key, async |c: &mut Change| {
                let mut item = store::get_in(c.tx(), name).await?.ok_or_else(|| Error::not_found(name.to_string()))?;
                check_etag(sent_etag, item.version, &name.to_string())?;
                let happened = change(&mut item, &time::now_text())?;
                if happened.is_some_and(Happened::makes_revision) {
                    store::insert_revision(c.tx(), &item).await?;
                }
                store::save(c.tx(), &item).await?;
                let out = to_wire(&item);
                if let Some(happened) = happened {
                    emit(c, happened, &out).await?;
                }
                written = Some(item);
                Ok(out)
            })
            .await?;
        if let Some(item) = written {
            self.items.put(&item);
        }
        Ok(out)
    }

    /// Parses the `category = …`, `handling_mode = …` and `state = …` terms of a list filter.
    fn list_filter(text: &str) -> Result<ListFilter<'static>> {
        let mut list_filter = ListFilter::default();
        for term in filter::parse(text, &["category", "handling_mode", "state"])? {
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
        Ok(list_filter)
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

/// The lobby screen's feed of one street's published items.
struct ItemWatch {
    /// `streets/{street}/items/`: the names of the street's items begin with it.
    prefix: String,
}

impl watch::Watch for ItemWatch {
    type Resource = ServiceItem;
    type Kind = ChangeType;
    type Response = WatchServiceItemsResponse;

    fn identity(item: &ServiceItem) -> (String, i64) {
        (item.name.clone(), version_of(&item.etag).unwrap_or(0))
    }

    fn change(&self, event: &Event) -> Option<(ChangeType, ServiceItem)> {
        if !event.key.starts_with(&self.prefix) {
            return None;
        }
        let (kind, item) = if let Some(e) = event.decode::<ServiceItemPublished>() {
            (ChangeType::Published, e.service_item)
        } else if let Some(e) = event.decode::<ServiceItemChanged>() {
            (ChangeType::Changed, e.service_item)
        } else {
            (ChangeType::Retired, event.decode::<ServiceItemRetired>()?.service_item)
        };
        Some((kind, item?))
    }

    fn respond(update: Update<ServiceItem, ChangeType>) -> WatchServiceItemsResponse {
        let (change_type, service_item) = match update {
            Update::Existing(item) => (ChangeType::Existing, Some(item)),
            Update::Current => (ChangeType::Current, None),
            Update::Changed(kind, item) => (kind, Some(item)),
        };
        WatchServiceItemsResponse { change_type: change_type as i32, service_item }
    }
}

#[tonic::async_trait]
impl CatalogueService for Catalogue {
    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_service_item(&self, request: Request<GetServiceItemRequest>) -> Result<Response<ServiceItem>, Status> {
        let caller = self.caller(&request)?;
        let name = ItemName::parse("name", &request.get_ref().name)?;
        Ok(Response::new(to_wire(&self.visible_item(&caller, &name).await?)))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_service_items(
        &self,
        request: Request<ListServiceItemsRequest>,
    ) -> Result<Response<ListServiceItemsResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let size = page::page_size(req.page_size, 50, 1000)?;
        let mut list_filter = Self::list_filter(&req.filter)?;
        if !Self::is_editor(&caller, &street) {
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
        let mut items = store::list(self.writer.db().reader(), &street, &list_filter, &after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut items, size, |i| vec![i.name.id().as_str().to_owned()]);
        Ok(Response::new(ListServiceItemsResponse {
            service_items: items.iter().map(to_wire).collect(),
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
        let street = StreetId::parse_parent("parent", &req.parent)?;
        caller.require_role_in(street.as_str(), EDITORS)?;
        let key = RequestKey::new(caller.key(), "CreateServiceItem", &req.request_id, &req)?;
        let mut v = Violations::new();
        let id = match req.service_item_id.as_str() {
            "" => Some(Id::generate('i')),
            id => v.check(Id::parse("service_item_id", id)),
        };
        let content = match &req.service_item {
            Some(item) => v.check(Content::parse("service_item", item)),
            None => {
                v.add("service_item", "is required");
                None
            }
        };
        v.finish()?;
        let (Some(id), Some(content)) = (id, content) else {
            return Err(Error::invalid("service_item", "is invalid").into());
        };
        let item = Item::draft(ItemName::new(street, id), content, &time::now_text());
        let mut created = false;
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                store::insert(c.tx(), &item).await?;
                created = true;
                Ok(to_wire(&item))
            })
            .await?;
        if created {
            self.items.put(&item);
        }
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().service_item.as_ref().map(|i| i.name.as_str()).unwrap_or_default()))]
    async fn update_service_item(
        &self,
        request: Request<UpdateServiceItemRequest>,
    ) -> Result<Response<ServiceItem>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let patch = req.service_item.clone().ok_or_else(|| Error::invalid("service_item", "is required"))?;
        let name = ItemName::parse("service_item.name", &patch.name)?;
        caller.require_role_in(name.street().as_str(), EDITORS)?;
        let key = RequestKey::new(caller.key(), "UpdateServiceItem", &req.request_id, &req)?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        // Check the mask before touching the store, so bad input writes nothing.
        crate::domain::apply_mask(&mut ServiceItem::default(), &patch, &paths)?;
        let out = self
            .change_item(&key, &name, &patch.etag, |item, now| {
                let content = item.content.patched(&patch, &paths, "service_item")?;
                Ok(item.change(content, now))
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
        caller.require_role_in(name.street().as_str(), EDITORS)?;
        let key = RequestKey::new(caller.key(), "DeleteServiceItem", &req.request_id, &req)?;
        let mut deleted = None;
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                let item = store::get_in(c.tx(), &name).await?.ok_or_else(|| Error::not_found(name.to_string()))?;
                check_etag(&req.etag, item.version, &name.to_string())?;
                item.check_deletable()?;
                store::delete(c.tx(), &name).await?;
                deleted = Some(item.version + 1);
                Ok(pbjson_types::Empty {})
            })
            .await?;
        if let Some(version) = deleted {
            self.items.invalidate(&name.to_string(), version);
        }
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn publish_service_item(
        &self,
        request: Request<PublishServiceItemRequest>,
    ) -> Result<Response<ServiceItem>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let name = ItemName::parse("name", &req.name)?;
        caller.require_role_in(name.street().as_str(), EDITORS)?;
        let key = RequestKey::new(caller.key(), "PublishServiceItem", &req.request_id, &req)?;
        let out = self.change_item(&key, &name, &req.etag, |item, now| item.publish(now).map(Some)).await?;
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
        caller.require_role_in(name.street().as_str(), EDITORS)?;
        let key = RequestKey::new(caller.key(), "RetireServiceItem", &req.request_id, &req)?;
        let out = self.change_item(&key, &name, &req.etag, |item, now| item.retire(now).map(Some)).await?;
        Ok(Response::new(out))
    }

    // The query is what a resident typed: it stays out of the span.
    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn search_service_items(
        &self,
        request: Request<SearchServiceItemsRequest>,
    ) -> Result<Response<SearchServiceItemsResponse>, Status> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let street = v.check(StreetId::parse_parent("parent", &req.parent));
        let size = v.check(page::page_size(req.page_size, 20, 100));
        let category =
            v.check(enum_name("category", req.category, |v| Category::try_from(v).ok(), Category::as_str_name));
        let mode = v.check(enum_name(
            "handling_mode",
            req.handling_mode,
            |v| HandlingMode::try_from(v).ok(),
            HandlingMode::as_str_name,
        ));
        // Words past the sixteenth are not searched for: each word is matched against every
        // candidate.
        let mut terms = search::terms(&req.query);
        terms.truncate(search::MAX_TERMS);
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
        let candidates = store::search_candidates(self.writer.db().reader(), &street, &longest, &filter).await?;
        let mut scored: Vec<(u32, Item)> = candidates
            .into_iter()
            .filter_map(|item| search::score(&terms, &item.content.search_fields()).map(|s| (s, item)))
            .collect();
        // Best first; equal scores in name order, so pages are stable.
        scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.id().cmp(b.1.name.id())));
        let start = match position {
            None => 0,
            Some(p) => {
                let (score, id) = (p[0].parse::<u32>().unwrap_or(0), p[1].as_str());
                // The first item after the position in (score desc, id asc) order.
                scored
                    .iter()
                    .position(|(s, i)| *s < score || (*s == score && i.name.id().as_str() > id))
                    .unwrap_or(scored.len())
            }
        };
        let page: Vec<&(u32, Item)> = scored.iter().skip(start).take(size).collect();
        let next_page_token = match (scored.len() > start + size, page.last()) {
            (true, Some((s, i))) => self.pages.encode(&query, &[s.to_string(), i.name.id().as_str().to_owned()]),
            _ => String::new(),
        };
        Ok(Response::new(SearchServiceItemsResponse {
            service_items: page.iter().map(|(_, i)| to_wire(i)).collect(),
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
        let mut revisions = store::list_revisions(self.writer.db().reader(), &name, before, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut revisions, size, |r| vec![r.revision.to_string()]);
        Ok(Response::new(ListServiceItemRevisionsResponse {
            revisions: revisions.iter().map(|r| revision_to_wire(&name, r)).collect(),
            next_page_token,
        }))
    }

    type WatchServiceItemsStream = WatchStream<WatchServiceItemsResponse>;

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn watch_service_items(
        &self,
        request: Request<WatchServiceItemsRequest>,
    ) -> Result<Response<Self::WatchServiceItemsStream>, Status> {
        let street = StreetId::parse_parent("parent", &request.get_ref().parent)?;
        let caller = self.caller(&request)?;
        let permit = self.streams.open(&caller, &request)?;
        // Listen before reading the snapshot, so no change falls between the two.
        let listener = self.bus.listen("catalogue.item.").await?;
        let published = ListFilter { state: "PUBLISHED", ..Default::default() };
        let mut snapshot = Vec::new();
        let mut after = String::new();
        loop {
            let page = store::list(self.writer.db().reader(), &street, &published, &after, 500).await?;
            let Some(last) = page.last() else { break };
            after = last.name.id().as_str().to_owned();
            snapshot.extend(page.iter().map(to_wire));
        }
        let watch = ItemWatch { prefix: format!("{}/items/", street.parent()) };
        Ok(Response::new(watch::stream(watch, snapshot, listener, permit, self.shutdown.clone())))
    }
}
