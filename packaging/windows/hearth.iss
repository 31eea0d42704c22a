; Inno Setup script for Hearth on Windows: a per-user installer (no admin rights).
;
;   iscc /DAppVersion=0.1.0 packaging\windows\hearth.iss
;
; Run from the repository root after the PyInstaller build (packaging\README.md
; has the whole sequence). Reads the frozen folder from dist\windows\hearth and
; writes dist\Hearth-<version>-setup.exe. Needs Inno Setup 6.3 or newer.

#ifndef AppVersion
  #error Pass the version: iscc /DAppVersion=X.Y.Z packaging\windows\hearth.iss
#endif
; Publisher and AppId: packaging\identity.ini, shared with the .deb and the .app.
#define Identity SourcePath + "..\identity.ini"
#define AppPublisher ReadIni(Identity, "hearth", "publisher", "")
#define AppGuid ReadIni(Identity, "hearth", "windows_app_id", "")
#if AppPublisher == "" || AppGuid == ""
  #error packaging\identity.ini has no publisher or windows_app_id
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\windows\hearth"
#endif

[Setup]
; Never change AppId: Windows finds the installed Hearth (to upgrade or remove it) by it.
; "{{" is Inno's escaped "{": the value is {GUID}.
AppId={{{#AppGuid}}
AppName=Hearth
AppVersion={#AppVersion}
AppVerName=Hearth {#AppVersion}
AppPublisher={#AppPublisher}
VersionInfoVersion={#AppVersion}
; Per-user: installs into %LOCALAPPDATA%\Programs\Hearth without a UAC prompt.
PrivilegesRequired=lowest
DefaultDirName={autopf}\Hearth
DefaultGroupName=Hearth
DisableProgramGroupPage=yes
DisableDirPage=auto
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
SetupIconFile=..\..\resources\icons\hearth.ico
UninstallDisplayIcon={app}\Hearth.exe
UninstallDisplayName=Hearth
WizardStyle=modern
OutputDir=..\..\dist
OutputBaseFilename=Hearth-{#AppVersion}-setup
Compression=lzma2
SolidCompression=yes
; An upgrade closes a running Hearth (Restart Manager) instead of failing on locked files.
CloseApplications=yes
RestartApplications=no

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"

[InstallDelete]
; PyInstaller's folder changes between versions; a file left from the previous
; one (an old DLL) could be loaded by the new one. User data is not in {app}.
Type: filesandordirs; Name: "{app}\_internal"

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\Hearth"; Filename: "{app}\Hearth.exe"; Comment: "Private, offline chat with open language models"
Name: "{autodesktop}\Hearth"; Filename: "{app}\Hearth.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\Hearth.exe"; Description: "{cm:LaunchProgram,Hearth}"; Flags: nowait postinstall skipifsilent

; No [UninstallDelete]: chats, models and settings live in %LOCALAPPDATA%\Hearth
; (platformdirs), outside {app}, so uninstalling and upgrading keep them.
