// Everything in the app's resource group except the registry (infra/acr.bicep): identities, storage,
// monitoring, the Flex Consumption Function App, the Event Grid system topic, an optional VNet, and the role
// assignments of both identities. Each role assignment names the code path that needs it.
targetScope = 'resourceGroup'

param name string
param location string
param resourceToken string
param tags object

@description('Existing registry in this resource group (infra/acr.bicep).')
param registryName string

@description('Resource group of the container groups (infra/scoring.bicep).')
param scoringResourceGroupName string

@description('Tag of the scoring image in the registry.')
param imageTag string

@description('The image\'s R packages, "name=version;...", as recorded from the image by the deploy script.')
param imageRPackages string = ''

@description('Place container groups and the app in a VNet.')
param enableVnet bool = false

@description('Id of the custom subnet-join role (main.bicep); only with enableVnet.')
param subnetJoinRoleDefinitionId string = ''

@description('Upper bound of Flex Consumption instances.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

var imageRepository = 'r-scoring'
var deploymentContainerName = 'app-package'
var settingsFile = loadJsonContent('app-settings.json')
var containers = settingsFile.containers

// Built-in role definition ids (Microsoft Learn, "Azure built-in roles").
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
var managedIdentityOperator = 'f1a07417-d97a-45cb-824c-7a7467783830'
var acrPull = '7f951dda-4ed3-4680-a7ca-43fe172d538d'

// ------------------------------------------------------------------------------------------------ identities

// The Function App's identity: control plane (container groups), storage for the host, task hub and data.
resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${name}-app'
  location: location
  tags: tags
}

// Attached to container groups, which run model code: pull the image, read models and input, write staging.
resource workerIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${name}-worker'
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------------------------------- storage

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Event Grid, Flex Consumption and ACI (without the VNet option) reach storage over its public endpoint; every request needs Entra ID auth (shared keys are off)
  // checkov:skip=CKV_AZURE_59: as CKV_AZURE_35: public endpoint, Entra ID only
  // checkov:skip=CKV_AZURE_43: the name is 'st' + uniqueString(): 15 lowercase letters and digits, which checkov cannot evaluate
  // checkov:skip=CKV_AZURE_206: results can be recomputed from models and input; LRS keeps cost at rest low (use GRS for production data)
  name: 'st${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource modelsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containers.models
  properties: {
    publicAccess: 'None'
  }
}

resource inputContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containers.input
  properties: {
    publicAccess: 'None'
  }
}

resource resultsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containers.results
  properties: {
    publicAccess: 'None'
  }
}

resource stagingContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containers.staging
  properties: {
    publicAccess: 'None'
  }
}

// Model versions uploaded through the HTTP API, until registered: the worker may read them, never write them.
resource uploadsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containers.uploads
  properties: {
    publicAccess: 'None'
  }
}

// Flex Consumption deploys the app package from this container, with the app identity.
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// ------------------------------------------------------------------------------------------------- monitoring

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${name}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${name}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true
  }
}

// ------------------------------------------------------------------------------------------- registry, VNet

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = if (enableVnet) {
  name: 'vnet-${name}'
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        '10.60.0.0/16'
      ]
    }
  }
}

// Flex Consumption's outbound VNet integration needs a subnet delegated to Microsoft.App/environments.
resource appSubnet 'Microsoft.Network/virtualNetworks/subnets@2023-11-01' = if (enableVnet) {
  parent: vnet
  name: 'app'
  properties: {
    addressPrefix: '10.60.0.0/24'
    delegations: [
      {
        name: 'flex-consumption'
        properties: {
          serviceName: 'Microsoft.App/environments'
        }
      }
    ]
  }
}

// Container groups (ACI_SUBNET_ID) go in a subnet delegated to ACI.
resource aciSubnet 'Microsoft.Network/virtualNetworks/subnets@2023-11-01' = if (enableVnet) {
  parent: vnet
  name: 'aci'
  dependsOn: [
    appSubnet
  ]
  properties: {
    addressPrefix: '10.60.1.0/24'
    delegations: [
      {
        name: 'container-groups'
        properties: {
          serviceName: 'Microsoft.ContainerInstance/containerGroups'
        }
      }
    ]
  }
}

// ----------------------------------------------------------------------------------------------- function app

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy on Flex Consumption keeps two always-ready instances per function (cost at rest); durable state survives in storage
  name: 'plan-${name}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

// Values only the template knows; each entry of infra/app-settings.json names one in "from" (or "none").
var infraValues = {
  none: ''
  appIdentityClientId: appIdentity.properties.clientId
  workerIdentityResourceId: workerIdentity.id
  workerIdentityClientId: workerIdentity.properties.clientId
  blobEndpoint: storage.properties.primaryEndpoints.blob
  queueEndpoint: storage.properties.primaryEndpoints.queue
  tableEndpoint: storage.properties.primaryEndpoints.table
  appInsightsConnectionString: appInsights.properties.ConnectionString
  appInsightsAuthenticationString: 'ClientId=${appIdentity.properties.clientId};Authorization=AAD'
  subscriptionId: subscription().subscriptionId
  scoringResourceGroup: scoringResourceGroupName
  location: location
  aciSubnetId: enableVnet ? aciSubnet.id : ''
  registryServer: registry.properties.loginServer
  scoringImage: '${registry.properties.loginServer}/${imageRepository}:${imageTag}'
  imageRPackages: imageRPackages
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17: client certificates would lock out Event Grid's webhook delivery to the blob trigger
  // checkov:skip=CKV_AZURE_222: Event Grid delivers blob events to the public webhook, and the HTTP API is public (function keys)
  // checkov:skip=CKV_AZURE_212: a minimum of always-ready instances costs money at rest; the app scales from zero, runs are durable
  // checkov:skip=CKV_AZURE_213: Flex Consumption scales to zero; a health-check ping would keep an instance (and its cost) alive
  name: 'func-${name}-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${appIdentity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: appIdentity.id
    virtualNetworkSubnetId: enableVnet ? appSubnet.id : null
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // A fixed value, or a template value (infraValues), per entry: see infra/app_settings.py.
      appSettings: [for s in settingsFile.appSettings: {
        name: s.name
        value: '${s.value}${infraValues[s.from]}'
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: appIdentity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  dependsOn: [
    deploymentContainer
  ]
}

// Publishing uses Entra ID (az functionapp deployment), never basic-auth credentials.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

// BlobCreated events of the storage account; the deploy script subscribes the blob trigger once the code is live
// (the webhook needs the blobs_extension system key, which exists only then).
resource storageEvents 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'evgt-${name}-storage'
  location: location
  tags: tags
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

// ------------------------------------------------------------------------------- role assignments: app identity

// Code path: the Functions host (AzureWebJobsStorage__*: keys, leases, the deployment package), the Durable task
// hub's blobs, and the app's blob I/O (STORAGE__*: plan, publish, retry, sweeper logs, model registration).
// Account scope: the host and the task hub create their own containers at run time.
resource appBlobData 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Code path: the Durable task hub's control and work-item queues; the blob trigger's poison queue.
resource appQueueData 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Code path: the Durable task hub's history and instances tables (get_status, get_status_by).
resource appTableData 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Code path: the host's telemetry with Entra ID auth (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
resource appTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appIdentity.id, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Code path: ACI create attaches WORKER_IDENTITY_RESOURCE_ID to the group; ARM checks
// Microsoft.ManagedIdentity/userAssignedIdentities/assign/action on that identity (else LinkedAuthorizationFailed).
resource appAssignsWorker 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workerIdentity.id, appIdentity.id, managedIdentityOperator)
  scope: workerIdentity
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', managedIdentityOperator)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Code path: ACI create with ACI_SUBNET_ID; ARM checks Microsoft.Network/virtualNetworks/subnets/join/action.
resource appJoinsAciSubnet 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableVnet) {
  name: guid(resourceGroup().id, 'aci-subnet', appIdentity.id, subnetJoinRoleDefinitionId)
  scope: aciSubnet
  properties: {
    roleDefinitionId: subnetJoinRoleDefinitionId
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Code path: client_api (POST /api/models/{model}/versions/{version}, PUT /api/uploads/{id}/parts/{n}) writes
// uploads; finish_registration deletes them. Already covered by appBlobData at account scope, which the host
// needs today; this assignment keeps the uploads path working if that one is ever narrowed to containers.
resource appWritesUploads 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(uploadsContainer.id, appIdentity.id, storageBlobDataContributor)
  scope: uploadsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------- role assignments: worker identity

// Code path: ACI pulls SCORING_IMAGE with the worker identity (imageRegistryCredentials.identity).
resource workerPullsImage 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, workerIdentity.id, acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPull)
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Code path: the worker reads the version's manifest and model packs.
resource workerReadsModels 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(modelsContainer.id, workerIdentity.id, storageBlobDataReader)
  scope: modelsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Code path: the worker reads the run's input blob.
resource workerReadsInput 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(inputContainer.id, workerIdentity.id, storageBlobDataReader)
  scope: inputContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Code path: the worker reads its job spec and writes its shard's output and status to staging; the app
// publishes from there. No access to results.
resource workerWritesStaging 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(stagingContainer.id, workerIdentity.id, storageBlobDataContributor)
  scope: stagingContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Code path: the registration container (`python -m scoring register --from-blob uploads/...`) reads the
// uploaded archive. Read only: any model's code runs under this identity and must not change an upload.
resource workerReadsUploads 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(uploadsContainer.id, workerIdentity.id, storageBlobDataReader)
  scope: uploadsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: workerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

output appIdentityPrincipalId string = appIdentity.properties.principalId
output functionAppName string = functionApp.name
output functionAppHostName string = functionApp.properties.defaultHostName
output storageAccountName string = storage.name
output storageAccountId string = storage.id
output systemTopicName string = storageEvents.name
output inputContainer string = containers.input
output inputPrefix string = settingsFile.inputPrefix
output scoringImage string = infraValues.scoringImage
