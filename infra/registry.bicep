// Stage 1 of `make deploy`: the app's resource group and the container registry, so that the image can be built
// (`az acr build`) before the rest is deployed. infra/main.bicep deploys this same file again as a module, so
// the registry has one definition and a redeploy changes nothing.
targetScope = 'subscription'

@description('Short name of this deployment; names every resource.')
@minLength(2)
@maxLength(16)
param name string

@description('Azure region of every resource.')
param location string

@description('The resource group of the app, the storage and the registry.')
param resourceGroupName string = 'rg-${name}'

var resourceToken = toLower(uniqueString(subscription().id, name, location))
var tags = {
  'azd-env-name': name
  app: 'r-scoring'
}

resource appResourceGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: resourceGroupName
  location: location
  tags: tags
}

module acr './acr.bicep' = {
  name: 'acr-${name}'
  scope: appResourceGroup
  params: {
    registryName: 'cr${resourceToken}'
    location: location
    tags: tags
  }
}

output resourceGroupName string = appResourceGroup.name
output registryName string = acr.outputs.registryName
output registryLoginServer string = acr.outputs.loginServer
