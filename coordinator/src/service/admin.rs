//! `fedsec.v1.Admin`: callable only with an admin certificate whose name is
//! listed in the configuration's `admins`. Thin: authorisation, then
//! [`crate::admin::AdminApi`].
//!
//! Every refused call is counted and audited (`admin_refused`, naming the
//! caller and the method): a tenant's certificate, an admin name not in
//! `admins`, a certificate without identity. Those audit rows take the
//! caller's row budget (`rate_limits.audit_rows_per_hour`): past it the
//! caller gets `RESOURCE_EXHAUSTED` and nothing more is stored or logged
//! (the log line goes with the audit row, so a tenant calling Admin in a
//! loop cannot grow the log without bound). Rate-limited
//! admin calls are audited once per identity and window.

use std::sync::Arc;

use fedsec_proto::tensor::MAX_CHUNK_BYTES;
use fedsec_proto::tls::PeerIdentity;
use fedsec_proto::v1::admin_server::Admin;
use fedsec_proto::v1::{
    ClientActionRequest, ClientInfo, CreateJobRequest, ExportModelChunk, ExportModelRequest,
    IncidentReportRequest, IncidentReportResponse, Job, JobRef, ListAuditEventsRequest,
    ListAuditEventsResponse, ListClientsRequest, ListClientsResponse, ListJobsRequest,
    ListJobsResponse, ListLedgerResponse, ListModelsResponse, RollbackModelRequest,
    TenantActionRequest, TenantContainment,
};
use tonic::{Request, Response, Status};

use crate::admin::AdminApi;
use crate::engine::Engine;
use crate::error::{Error, RejectReason};
use crate::listener::identity_key;
use crate::ratelimit::RpcClass;

/// The administration service.
#[derive(Debug, Clone)]
pub(crate) struct AdminService {
    engine: Arc<Engine>,
    api: AdminApi,
}

impl AdminService {
    pub(crate) fn new(engine: Arc<Engine>, api: AdminApi) -> Self {
        Self { engine, api }
    }

    /// The admin API acting as the caller, if the caller is a listed admin;
    /// a refusal is counted and audited.
    async fn authorize<T>(&self, req: &Request<T>, method: &str) -> Result<AdminApi, Status> {
        self.engine.check_alive()?;
        let (err, key, client_id) = match PeerIdentity::of_request(req) {
            Ok(PeerIdentity::Admin { name }) if self.engine.settings.admins.contains(&name) => {
                self.engine
                    .throttle(RpcClass::Admin, &format!("admin:{name}"), "")?;
                return Ok(self.api.acting_as(format!("admin {name}")));
            }
            Ok(id) => {
                let why = match &id {
                    PeerIdentity::Admin { name } => {
                        format!("admin identity {name:?} is not listed in the coordinator's admins")
                    }
                    PeerIdentity::Client(_) => format!("{id} may not call the Admin service"),
                };
                let client_id = match &id {
                    PeerIdentity::Client(c) => c.client_id.clone(),
                    PeerIdentity::Admin { .. } => String::new(),
                };
                (
                    Error::rejected(RejectReason::AdminRefused, why),
                    identity_key(&id),
                    client_id,
                )
            }
            Err(e) => (
                Error::rejected(RejectReason::Unauthenticated, e.to_string()),
                req.remote_addr()
                    .map_or_else(|| "peer:unknown".to_owned(), |a| format!("peer:{}", a.ip())),
                String::new(),
            ),
        };
        if let Some(reason) = err.reject_reason() {
            self.engine.metrics.rejected(reason);
        }
        let detail = format!("Admin/{method} refused for {key}: {err}");
        if let Err(exhausted) = self
            .engine
            .audit_by(&key, "admin_refused", "", &client_id, detail)
            .await
        {
            // Past the caller's row budget nothing is stored or logged.
            return Err(exhausted.into());
        }
        tracing::info!(identity = %key, method, error = %err, "Admin call refused");
        Err(err.into())
    }
}

type ExportStream = tokio_stream::Iter<std::vec::IntoIter<Result<ExportModelChunk, Status>>>;

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_job(
        &self,
        request: Request<CreateJobRequest>,
    ) -> Result<Response<Job>, Status> {
        let api = self.authorize(&request, "CreateJob").await?;
        let config = request
            .into_inner()
            .config
            .ok_or_else(|| Status::invalid_argument("config: required"))?;
        Ok(Response::new(api.create_job_proto(&config).await?))
    }

    async fn get_job(&self, request: Request<JobRef>) -> Result<Response<Job>, Status> {
        let api = self.authorize(&request, "GetJob").await?;
        Ok(Response::new(api.job(&request.get_ref().job_id)?))
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let api = self.authorize(&request, "ListJobs").await?;
        Ok(Response::new(ListJobsResponse { jobs: api.jobs() }))
    }

    async fn pause_job(&self, request: Request<JobRef>) -> Result<Response<Job>, Status> {
        let api = self.authorize(&request, "PauseJob").await?;
        Ok(Response::new(
            api.pause_job(&request.get_ref().job_id).await?,
        ))
    }

    async fn resume_job(&self, request: Request<JobRef>) -> Result<Response<Job>, Status> {
        let api = self.authorize(&request, "ResumeJob").await?;
        Ok(Response::new(
            api.resume_job(&request.get_ref().job_id).await?,
        ))
    }

    async fn list_clients(
        &self,
        request: Request<ListClientsRequest>,
    ) -> Result<Response<ListClientsResponse>, Status> {
        let api = self.authorize(&request, "ListClients").await?;
        Ok(Response::new(ListClientsResponse {
            clients: api.clients().await?,
        }))
    }

    async fn quarantine_client(
        &self,
        request: Request<ClientActionRequest>,
    ) -> Result<Response<ClientInfo>, Status> {
        let api = self.authorize(&request, "QuarantineClient").await?;
        let r = request.get_ref();
        Ok(Response::new(
            api.quarantine_client(&r.client_id, &r.reason).await?,
        ))
    }

    async fn release_client(
        &self,
        request: Request<ClientActionRequest>,
    ) -> Result<Response<ClientInfo>, Status> {
        let api = self.authorize(&request, "ReleaseClient").await?;
        let r = request.get_ref();
        Ok(Response::new(
            api.release_client(&r.client_id, &r.reason).await?,
        ))
    }

    async fn revoke_client(
        &self,
        request: Request<ClientActionRequest>,
    ) -> Result<Response<ClientInfo>, Status> {
        let api = self.authorize(&request, "RevokeClient").await?;
        let r = request.get_ref();
        Ok(Response::new(
            api.revoke_client(&r.client_id, &r.reason).await?,
        ))
    }

    async fn list_ledger(
        &self,
        request: Request<JobRef>,
    ) -> Result<Response<ListLedgerResponse>, Status> {
        let api = self.authorize(&request, "ListLedger").await?;
        Ok(Response::new(ListLedgerResponse {
            entries: api.ledger(&request.get_ref().job_id).await?,
        }))
    }

    async fn list_models(
        &self,
        request: Request<JobRef>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        let api = self.authorize(&request, "ListModels").await?;
        Ok(Response::new(ListModelsResponse {
            versions: api.models(&request.get_ref().job_id).await?,
        }))
    }

    async fn rollback_model(
        &self,
        request: Request<RollbackModelRequest>,
    ) -> Result<Response<Job>, Status> {
        let api = self.authorize(&request, "RollbackModel").await?;
        let r = request.get_ref();
        if !r.before_client_id.is_empty() {
            if r.version != 0 {
                return Err(Status::invalid_argument(
                    "version and before_client_id: give one, not both",
                ));
            }
            return Ok(Response::new(
                api.rollback_before_client(&r.job_id, &r.before_client_id, &r.reason)
                    .await?,
            ));
        }
        Ok(Response::new(
            api.rollback(&r.job_id, r.version, &r.reason).await?,
        ))
    }

    async fn quarantine_tenant(
        &self,
        request: Request<TenantActionRequest>,
    ) -> Result<Response<TenantContainment>, Status> {
        let api = self.authorize(&request, "QuarantineTenant").await?;
        let r = request.get_ref();
        Ok(Response::new(
            api.quarantine_tenant(&r.tenant_id, &r.reason).await?,
        ))
    }

    async fn release_tenant(
        &self,
        request: Request<TenantActionRequest>,
    ) -> Result<Response<TenantContainment>, Status> {
        let api = self.authorize(&request, "ReleaseTenant").await?;
        let r = request.get_ref();
        Ok(Response::new(
            api.release_tenant(&r.tenant_id, &r.reason).await?,
        ))
    }

    async fn incident_report(
        &self,
        request: Request<IncidentReportRequest>,
    ) -> Result<Response<IncidentReportResponse>, Status> {
        let api = self.authorize(&request, "IncidentReport").await?;
        let r = request.get_ref();
        let report = api
            .incident_report(&r.client_id, &r.tenant_id, &r.job_id)
            .await?;
        let report_json = serde_json::to_string(&report)
            .map_err(|e| Status::internal(format!("encoding the report: {e}")))?;
        Ok(Response::new(IncidentReportResponse { report_json }))
    }

    type ExportModelStream = ExportStream;

    async fn export_model(
        &self,
        request: Request<ExportModelRequest>,
    ) -> Result<Response<Self::ExportModelStream>, Status> {
        let api = self.authorize(&request, "ExportModel").await?;
        let r = request.get_ref();
        let file = bytes::Bytes::from(api.export(&r.job_id, r.version).await?);
        let mut chunks = Vec::with_capacity(file.len() / MAX_CHUNK_BYTES + 1);
        let mut at = 0;
        while at < file.len() {
            let end = (at + MAX_CHUNK_BYTES).min(file.len());
            chunks.push(Ok(ExportModelChunk {
                data: file.slice(at..end),
            }));
            at = end;
        }
        Ok(Response::new(tokio_stream::iter(chunks)))
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        let api = self.authorize(&request, "ListAuditEvents").await?;
        let r = request.get_ref();
        let job = (!r.job_id.is_empty()).then_some(r.job_id.as_str());
        Ok(Response::new(ListAuditEventsResponse {
            events: api.audit_events(job, r.limit as usize).await?,
        }))
    }
}
