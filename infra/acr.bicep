// The container registry for the scoring image. Deployed on its own first (infra/registry.bicep), because
// `az acr build` needs the registry before the rest of the template is deployed with the image's tag.
param registryName string
param location string
param tags object

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  // checkov:skip=CKV_AZURE_163: vulnerability scanning is Defender for Containers, a subscription plan, not a registry setting
  // checkov:skip=CKV_AZURE_166: quarantine needs Premium (about $50 a month at rest) and a scanner that releases images; Basic keeps cost near zero
  // checkov:skip=CKV_AZURE_233: zone redundancy needs Premium; a registry outage delays a run, it loses no data
  // checkov:skip=CKV_AZURE_139: ACI pulls over the public endpoint (with the worker identity); private endpoints need Premium and a VNet
  name: registryName
  location: location
  tags: tags
  sku: {
    name: 'Basic'
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    publicNetworkAccess: 'Enabled'
  }
}

output registryName string = registry.name
output loginServer string = registry.properties.loginServer
