-- Orthanc Lua script: send each stable CR or DX study to the pre-screening service, once.
-- Install as /etc/orthanc/route-to-diagnostics.lua and list it in "LuaScripts"; the service
-- must be a DicomModalities entry named "diagnostics" (docs/deploy.md, section 6).
--
-- The service sends its results (SR, overlay, presentation state) back into the same study,
-- which makes the study stable again: a study that already holds a series made by the service
-- (Manufacturer "radiology-diagnostics") is not sent a second time.
local OUR_MANUFACTURER = 'radiology-diagnostics'

function OnStableStudy(studyId, tags, metadata)
  local study = ParseJson(RestApiGet('/studies/' .. studyId))
  local radiograph = false
  for _, seriesId in ipairs(study['Series']) do
    local series = ParseJson(RestApiGet('/series/' .. seriesId))
    local main = series['MainDicomTags']
    if main['Manufacturer'] == OUR_MANUFACTURER then
      return
    end
    if main['Modality'] == 'CR' or main['Modality'] == 'DX' then
      radiograph = true
    end
  end
  if radiograph then
    -- A C-STORE job for the whole study (the Lua SendToModality command takes instances only).
    local request = { Resources = { studyId }, Asynchronous = true }
    RestApiPost('/modalities/diagnostics/store', DumpJson(request, true))
  end
end
