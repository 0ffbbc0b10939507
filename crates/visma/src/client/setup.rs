//! Setup data the mapping refers to: departments, branches, dimensions and their segments.

use super::*;

impl VismaClient {
    pub async fn get_department(&self, id: &str) -> Result<Option<DepartmentDto>, VismaError> {
        self.get_optional(&format!("/department/{}", path_segment(id))).await
    }

    pub async fn list_departments(&self) -> Result<Vec<DepartmentDto>, VismaError> {
        self.get_list("/department", &[]).await
    }

    pub async fn list_branches(&self) -> Result<Vec<BranchDto>, VismaError> {
        self.get_list("/branch", &[]).await
    }

    pub async fn get_dimension(&self, id: &str) -> Result<Option<DimensionDto>, VismaError> {
        self.get_optional(&format!("/dimension/{}", path_segment(id))).await
    }

    /// `PUT /dimension/{id}/{segmentId}`: inserts/updates/deletes segment values (204).
    pub async fn put_segment_values(
        &self,
        dimension_id: &str,
        segment_id: i32,
        dto: &SegmentUpdateDto,
    ) -> Result<(), VismaError> {
        let body = Self::to_json(dto)?;
        let path = format!("/dimension/{}/{segment_id}", path_segment(dimension_id));
        let (status, headers, text) = self.send(Method::PUT, &path, &[], Some(&body), None).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Self::fail(status, &headers, &text))
        }
    }
}
