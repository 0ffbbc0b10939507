//! Employees: read, list, create, update.

use super::*;

impl VismaClient {
    /// `GET /employee/{employeeCd}`; `None` on 404. The ETag is in `time_stamp` (filled from
    /// the `ETag` header when the body lacks it).
    pub async fn get_employee(&self, employee_cd: &str) -> Result<Option<EmployeeDto>, VismaError> {
        let path = format!("/employee/{}", path_segment(employee_cd));
        let (status, headers, body) = self.send(Method::GET, &path, &[], None, None).await?;
        match status {
            s if s.is_success() => {
                let mut dto: EmployeeDto = Self::decode(&body)?;
                if dto.time_stamp.is_none() {
                    dto.time_stamp = header_str(&headers, ETAG.as_str())
                        .map(|t| t.trim_start_matches("W/").trim_matches('"').to_string());
                }
                Ok(Some(dto))
            }
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(Self::fail(s, &headers, &body)),
        }
    }

    /// One page of `GET /employee`.
    pub async fn list_employees(&self, q: &EmployeeQuery) -> Result<Page<EmployeeDto>, VismaError> {
        let mut query = vec![
            ("pageNumber", q.page_number.max(1).to_string()),
            ("pageSize", q.page_size.max(1).to_string()),
        ];
        if let Some((at, cond)) = q.modified {
            query.push(("lastModifiedDateTime", at.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()));
            query.push(("lastModifiedDateTimeCondition", cond.as_str().to_string()));
        }
        let items: Vec<EmployeeDto> = self.get_list("/employee", &query).await?;
        let meta = items.first().and_then(|e| e.metadata.clone());
        Ok(Page {
            total_count: meta.as_ref().and_then(|m| m.total_count),
            max_page_size: meta.and_then(|m| m.max_page_size),
            items,
        })
    }

    /// Every employee (optionally only those modified per `modified`), page by page. Stops on
    /// a short page, so a server that caps `pageSize` below what was asked still terminates.
    pub async fn list_all_employees(
        &self,
        modified: Option<(chrono::NaiveDateTime, DateCondition)>,
    ) -> Result<Vec<EmployeeDto>, VismaError> {
        let mut q = EmployeeQuery { page_number: 1, page_size: 1000, modified };
        let mut all = Vec::new();
        loop {
            let page = self.list_employees(&q).await?;
            let n = page.items.len();
            let effective = page
                .max_page_size
                .map(|m| (m.max(1) as u64).min(u64::from(q.page_size)))
                .unwrap_or(u64::from(q.page_size));
            all.extend(page.items);
            let total_reached = page.total_count.is_some_and(|t| all.len() as i64 >= t);
            if n == 0 || (n as u64) < effective || total_reached {
                return Ok(all);
            }
            q.page_number += 1;
        }
    }

    /// `POST /employee`. A taken employee number is reported as
    /// [`VismaError::DuplicateEmployee`] so the caller can read and update instead.
    pub async fn create_employee(&self, dto: &EmployeeCreateDto) -> Result<Created, VismaError> {
        let body = Self::to_json(dto)?;
        let (status, headers, text) = self.send(Method::POST, "/employee", &[], Some(&body), None).await?;
        let employee_cd = dto.employee_cd.value.clone();
        if status.is_success() {
            return Ok(Created {
                employee_cd,
                location: header_str(&headers, LOCATION.as_str()),
                etag: header_str(&headers, ETAG.as_str()),
            });
        }
        match Self::fail(status, &headers, &text) {
            VismaError::Validation { message, .. } if is_duplicate_message(&message) => {
                Err(VismaError::DuplicateEmployee { employee_cd, message })
            }
            e => Err(e),
        }
    }

    /// `PUT /employee/{employeeCd}` (204). Returns the new ETag when Visma sends one.
    /// `if_match` turns a concurrent change into [`VismaError::Conflict`] (412).
    pub async fn update_employee(
        &self,
        employee_cd: &str,
        dto: &EmployeeUpdateDto,
        if_match: Option<&str>,
    ) -> Result<Option<String>, VismaError> {
        let body = Self::to_json(dto)?;
        let path = format!("/employee/{}", path_segment(employee_cd));
        let (status, headers, text) = self.send(Method::PUT, &path, &[], Some(&body), if_match).await?;
        if status.is_success() {
            return Ok(header_str(&headers, ETAG.as_str()));
        }
        Err(Self::fail(status, &headers, &text))
    }
}
