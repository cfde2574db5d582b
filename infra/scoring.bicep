// The scoring resource group holds nothing but the container groups the app creates for a run. The app identity
// may manage container groups here, and only here.
targetScope = 'resourceGroup'

@description('Principal (object) id of the app identity.')
param appIdentityPrincipalId string

// Built-in "Azure Container Instances Contributor Role": Microsoft.ContainerInstance/containerGroups/* and reads.
var aciContributorRoleId = '5d977122-f97e-4b4d-a52f-6b43003ddb4d'

// Code path: pipeline ACI client create/state/logs/stop/delete/list_by_resource_group (ACI_RESOURCE_GROUP).
resource appManagesContainerGroups 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, appIdentityPrincipalId, aciContributorRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', aciContributorRoleId)
    principalId: appIdentityPrincipalId
    principalType: 'ServicePrincipal'
    description: 'app identity: create, read, delete the scoring container groups'
  }
}
