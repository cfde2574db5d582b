// The whole service, deployed by `make deploy` (infra/deploy.py) at subscription scope:
//   rg-<name>          app, storage, registry, monitoring, identities, Event Grid topic (infra/app.bicep)
//   rg-<name>-scoring  only the container groups of running shards (infra/scoring.bicep)
// Plain resources and local modules only, so that it parses offline (tests/test_infra.py).
targetScope = 'subscription'

@description('Short name of this deployment; names every resource.')
@minLength(2)
@maxLength(16)
param name string

@description('Azure region of every resource (Flex Consumption must be available there).')
param location string

@description('Tag of the scoring image, built by `az acr build` before this template is deployed.')
param imageTag string

@description('The image\'s R packages, "name=version;...", read from the image by the deploy script.')
param imageRPackages string = ''

@description('Container groups and the app in a VNet (subnets delegated to ACI and to Flex Consumption).')
param enableVnet bool = false

var appResourceGroupName = 'rg-${name}'
var scoringResourceGroupName = 'rg-${name}-scoring'
var resourceToken = toLower(uniqueString(subscription().id, name, location))
var tags = {
  'azd-env-name': name
  app: 'r-scoring'
}

// The app's resource group and the registry: one definition, shared with stage 1 of the deploy.
module registry './registry.bicep' = {
  name: 'registry-${name}'
  params: {
    name: name
    location: location
    resourceGroupName: appResourceGroupName
  }
}

resource scoringResourceGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: scoringResourceGroupName
  location: location
  tags: tags
}

// Joining a subnet has no narrower built-in role than Network Contributor, so a custom one: this one action.
resource subnetJoinRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (enableVnet) {
  name: guid(subscription().id, name, 'aci-subnet-join')
  properties: {
    // Custom role names are unique per tenant: the subscription id keeps two deployments of one name apart.
    roleName: 'ACI subnet join (${name}, ${subscription().subscriptionId})'
    description: 'Place container groups in the delegated ACI subnet of ${name}.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Network/virtualNetworks/subnets/join/action'
        ]
        notActions: []
      }
    ]
    assignableScopes: [
      subscriptionResourceId('Microsoft.Resources/resourceGroups', appResourceGroupName)
    ]
  }
}

module app './app.bicep' = {
  name: 'app-${name}'
  scope: resourceGroup(appResourceGroupName)
  params: {
    name: name
    location: location
    resourceToken: resourceToken
    tags: tags
    registryName: registry.outputs.registryName
    scoringResourceGroupName: scoringResourceGroup.name
    imageTag: imageTag
    imageRPackages: imageRPackages
    enableVnet: enableVnet
    subnetJoinRoleDefinitionId: enableVnet ? subnetJoinRole.id : ''
  }
}

module scoring './scoring.bicep' = {
  name: 'scoring-${name}'
  scope: scoringResourceGroup
  params: {
    appIdentityPrincipalId: app.outputs.appIdentityPrincipalId
  }
}

output appResourceGroup string = appResourceGroupName
output scoringResourceGroup string = scoringResourceGroup.name
output registryName string = registry.outputs.registryName
output functionAppName string = app.outputs.functionAppName
output functionAppHostName string = app.outputs.functionAppHostName
output storageAccountName string = app.outputs.storageAccountName
output storageAccountId string = app.outputs.storageAccountId
output systemTopicName string = app.outputs.systemTopicName
output inputContainer string = app.outputs.inputContainer
output inputPrefix string = app.outputs.inputPrefix
output scoringImage string = app.outputs.scoringImage
