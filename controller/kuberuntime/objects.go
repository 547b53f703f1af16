package kuberuntime

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/instancemanager"
	"github.com/outpostdata/outpost/postgres"
)

// Ports and paths inside the instance pod.
const (
	PostgresPort = 5432
	HTTPPort     = 8008
	dataMount    = "/var/lib/postgresql/data"
	// The data directory is a subdirectory of the volume, whose root may
	// hold lost+found, which initdb refuses.
	dataDir   = dataMount + "/pgdata"
	configDir = "/etc/outpost"
	tlsMount  = "/etc/outpost-tls"
	// socketDir holds the Unix socket, where the instance manager connects
	// as the superuser; nothing outside the pod reaches it.
	socketDir   = "/var/run/postgresql"
	postgresUID = 999
)

// Labels on everything made for an instance.
const (
	LabelInstance  = "outpost.dev/instance"
	labelManagedBy = "app.kubernetes.io/managed-by"
	specHashKey    = "outpost.dev/spec-hash"
)

// Secret keys. The app Secret holds the application role's username,
// password, database, host, port, uri and the site CA (ca.crt); the
// superuser Secret only the superuser's password.
const (
	KeyUsername          = "username"
	KeyPassword          = "password"
	KeySuperuserPassword = "superuser-password"
	KeyDatabase          = "database"
	KeyHost              = "host"
	KeyPort              = "port"
	KeyURI               = "uri"
)

// AppCAPath is where the app Secret's URI expects its ca.crt: mount the
// Secret (or its ca.crt key) at /etc/outpost-app in the application's pod,
// or pass the file elsewhere with sslrootcert.
const AppCAPath = "/etc/outpost-app/" + KeyCA

// Names of the objects of an instance. The application's, the superuser's
// and the backup token's Secrets are apart, so whoever may read the app's
// Secret is not superuser: only the controller reads the others.
func AppSecretName(inst *outpostv1.PostgresInstance) string { return inst.Name + "-app" }
func SuperuserSecretName(inst *outpostv1.PostgresInstance) string {
	return inst.Name + "-superuser"
}
func BackupTokenSecretName(inst *outpostv1.PostgresInstance) string {
	return inst.Name + "-backup-token"
}
func TLSSecretName(inst *outpostv1.PostgresInstance) string { return inst.Name + "-tls" }

// legacySecretName is the one Secret that held every credential before
// they were split; its passwords move into the new Secrets.
func legacySecretName(inst *outpostv1.PostgresInstance) string { return inst.Name + "-credentials" }

func ConfigMapName(inst *outpostv1.PostgresInstance) string { return inst.Name + "-config" }
func ServiceName(inst *outpostv1.PostgresInstance) string   { return inst.Name }
func StatefulSetName(inst *outpostv1.PostgresInstance) string {
	return inst.Name
}

// Labels returns the labels of every object of an instance.
func Labels(inst *outpostv1.PostgresInstance) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":      "postgres",
		"app.kubernetes.io/instance":  inst.Name,
		"app.kubernetes.io/component": "database",
		labelManagedBy:                "outpost",
		LabelInstance:                 inst.Name,
	}
}

func selectorLabels(inst *outpostv1.PostgresInstance) map[string]string {
	return map[string]string{LabelInstance: inst.Name}
}

// serviceHost is the DNS name of the instance's Service.
func serviceHost(inst *outpostv1.PostgresInstance) string {
	return ServiceName(inst) + "." + inst.Namespace + ".svc"
}

// Endpoint is host:port for clients in the cluster.
func Endpoint(inst *outpostv1.PostgresInstance) string {
	return net.JoinHostPort(serviceHost(inst), strconv.Itoa(PostgresPort))
}

// appSecretData is the application's Secret: its role's credentials, a
// verify-full URI, and the site CA to verify the server with.
func appSecretData(inst *outpostv1.PostgresInstance, password string, caPEM []byte) map[string][]byte {
	want := controller.DesiredServerSettings(inst)
	database, owner := want.Database, want.Owner
	uri := postgres.ConnURL{Host: serviceHost(inst), Port: PostgresPort, User: owner, Password: password,
		Database: database, RootCert: AppCAPath}
	return map[string][]byte{
		KeyUsername: []byte(owner),
		KeyPassword: []byte(password),
		KeyDatabase: []byte(database),
		KeyHost:     []byte(serviceHost(inst)),
		KeyPort:     []byte(strconv.Itoa(PostgresPort)),
		KeyURI:      []byte(uri.String()),
		KeyCA:       caPEM,
	}
}

// instanceConfig is what the instance manager applies, from the spec.
func instanceConfig(inst *outpostv1.PostgresInstance) instancemanager.Config {
	want := controller.DesiredServerSettings(inst)
	return instancemanager.Config{
		Port: PostgresPort, Database: want.Database, Owner: want.Owner,
		Databases: want.Databases, Extensions: want.Extensions, Parameters: want.Parameters,
	}
}

func configMapData(inst *outpostv1.PostgresInstance, bk *podBackup, rc *instancemanager.RecoveryConfig) (map[string]string, error) {
	cfg := instanceConfig(inst)
	cfg.Backup, cfg.Recovery = bk.config(), rc
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	data := map[string]string{instancemanager.ConfigFileName: string(b)}
	if bk != nil && bk.recipient != "" {
		data[RecipientFile] = bk.recipient + "\n"
	}
	return data, nil
}

func serviceSpec(inst *outpostv1.PostgresInstance) corev1.ServiceSpec {
	return corev1.ServiceSpec{
		Type:     corev1.ServiceTypeClusterIP,
		Selector: selectorLabels(inst),
		Ports: []corev1.ServicePort{{
			Name: "postgres", Port: PostgresPort, Protocol: corev1.ProtocolTCP,
			TargetPort: intstr.FromString("postgres"),
		}, {
			// The instance manager, where the controller asks for backups.
			Name: "http", Port: HTTPPort, Protocol: corev1.ProtocolTCP,
			TargetPort: intstr.FromString("http"),
		}},
	}
}

// Options of the pods.
type PodOptions struct {
	// Image runs `outpost instance run` with PostgreSQL 15 and pgvector.
	Image           string
	ImagePullPolicy corev1.PullPolicy
}

// statefulSetSpec is the desired StatefulSet spec. VolumeClaimTemplates and
// Selector are immutable after creation; the caller keeps the old ones.
func statefulSetSpec(inst *outpostv1.PostgresInstance, opts PodOptions) appsv1.StatefulSetSpec {
	labels := Labels(inst)
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    inst.Spec.Resources.CPU,
		corev1.ResourceMemory: inst.Spec.Resources.Memory,
	}
	whenDeleted := appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	if inst.Spec.DeletionPolicy == outpostv1.DeletionDelete {
		whenDeleted = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	}
	probe := func(path string, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http")}},
			PeriodSeconds:    10,
			TimeoutSeconds:   5,
			FailureThreshold: failures,
		}
	}
	return appsv1.StatefulSetSpec{
		Replicas:    ptr.To[int32](1),
		ServiceName: ServiceName(inst),
		Selector:    &metav1.LabelSelector{MatchLabels: selectorLabels(inst)},
		PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
			WhenDeleted: whenDeleted,
			WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
		},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{
				AutomountServiceAccountToken:  ptr.To(false),
				EnableServiceLinks:            ptr.To(false),
				TerminationGracePeriodSeconds: ptr.To[int64](60),
				SecurityContext: &corev1.PodSecurityContext{
					RunAsNonRoot: ptr.To(true),
					RunAsUser:    ptr.To[int64](postgresUID),
					RunAsGroup:   ptr.To[int64](postgresUID),
					FSGroup:      ptr.To[int64](postgresUID),
					// Only a volume whose root is not ours yet is walked;
					// instance run makes pgdata 0700 again on every start.
					FSGroupChangePolicy: ptr.To(corev1.FSGroupChangeOnRootMismatch),
					SeccompProfile:      &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
				Containers: []corev1.Container{{
					Name:            "postgres",
					Image:           opts.Image,
					ImagePullPolicy: opts.ImagePullPolicy,
					Command: []string{"outpost", "instance", "run",
						"--data-dir", dataDir,
						"--config", configDir + "/" + instancemanager.ConfigFileName,
						"--http-addr", fmt.Sprintf(":%d", HTTPPort),
						"--tls-dir", tlsMount, "--socket-dir", socketDir},
					Env: []corev1.EnvVar{
						secretEnv(instancemanager.EnvSuperuserPassword, SuperuserSecretName(inst), KeySuperuserPassword),
						secretEnv(instancemanager.EnvAppPassword, AppSecretName(inst), KeyPassword),
					},
					Ports: []corev1.ContainerPort{
						{Name: "postgres", ContainerPort: PostgresPort, Protocol: corev1.ProtocolTCP},
						{Name: "http", ContainerPort: HTTPPort, Protocol: corev1.ProtocolTCP},
					},
					Resources:      corev1.ResourceRequirements{Requests: resources, Limits: resources},
					StartupProbe:   probe("/livez", 60),
					LivenessProbe:  probe("/livez", 3),
					ReadinessProbe: probe("/readyz", 1),
					SecurityContext: &corev1.SecurityContext{
						RunAsNonRoot:             ptr.To(true),
						ReadOnlyRootFilesystem:   ptr.To(true),
						AllowPrivilegeEscalation: ptr.To(false),
						Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					},
					VolumeMounts: []corev1.VolumeMount{
						{Name: "data", MountPath: dataMount},
						{Name: "config", MountPath: configDir, ReadOnly: true},
						// The root filesystem is read-only; postgres
						// needs somewhere to write temporary files and
						// more shared memory than a container's 64MB.
						{Name: "tmp", MountPath: "/tmp"},
						{Name: "run", MountPath: socketDir},
						{Name: "tls", MountPath: tlsMount, ReadOnly: true},
						{Name: "shm", MountPath: "/dev/shm"},
					},
				}},
				Volumes: []corev1.Volume{
					{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: ConfigMapName(inst)},
					}}},
					{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					{Name: "run", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					// The server certificate; the instance manager copies
					// the key to a 0600 file of its own for postgres.
					{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
						SecretName: TLSSecretName(inst), DefaultMode: ptrInt32(0o440),
					}}},
					{Name: "shm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
						Medium: corev1.StorageMediumMemory, SizeLimit: ptr.To(shmSize(inst)),
					}}},
				},
			},
		},
	}
}

// shmSize is a quarter of the memory limit: what parallel queries need at
// most, and counted against the limit anyway.
func shmSize(inst *outpostv1.PostgresInstance) resource.Quantity {
	return *resource.NewQuantity(inst.Spec.Resources.Memory.Value()/4, resource.BinarySI)
}

func volumeClaimTemplates(inst *outpostv1.PostgresInstance) []corev1.PersistentVolumeClaim {
	return []corev1.PersistentVolumeClaim{{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Labels: Labels(inst)},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: inst.Spec.Storage.StorageClassName,
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: inst.Spec.Storage.Size},
			},
		},
	}}
}

// hashOf identifies a desired spec, so an object is written only when what
// Outpost wants of it changed, not on every reconcile because the
// apiserver filled in defaults.
func hashOf(v any) string {
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}
