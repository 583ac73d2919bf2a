//! Translations of the English templates into the other catalogue languages. Each row lists
//! Norwegian (bokmål), Swedish, Danish, German, French and Dutch, in that order. A key without a
//! row falls back to English. Property and parameter names, state names and header names stay
//! as they are in every language: they are what the caller must send.

use super::{Key, Lang, TypeWord};

type Row = [&'static str; 6];

fn column(lang: Lang) -> Option<usize> {
    match lang {
        Lang::En => None,
        Lang::Nb => Some(0),
        Lang::Sv => Some(1),
        Lang::Da => Some(2),
        Lang::De => Some(3),
        Lang::Fr => Some(4),
        Lang::Nl => Some(5),
    }
}

fn row(key: Key) -> Option<Row> {
    Some(match key {
        Key::FieldRequired => [
            "{field} er påkrevd.",
            "{field} är obligatoriskt.",
            "{field} er påkrævet.",
            "{field} ist erforderlich.",
            "{field} est obligatoire.",
            "{field} is verplicht.",
        ],
        Key::FieldWrongType => [
            "{field} må være {expected}.",
            "{field} måste vara {expected}.",
            "{field} skal være {expected}.",
            "{field} muss {expected} sein.",
            "{field} doit être {expected}.",
            "{field} moet {expected} zijn.",
        ],
        Key::FieldTooLong => [
            "{field} er for lang: høyst {max} tegn er tillatt, {actual} ble sendt.",
            "{field} är för långt: högst {max} tecken är tillåtna, {actual} skickades.",
            "{field} er for lang: højst {max} tegn er tilladt, {actual} blev sendt.",
            "{field} ist zu lang: höchstens {max} Zeichen sind erlaubt, {actual} wurden übergeben.",
            "{field} est trop long : au plus {max} caractères sont autorisés, {actual} ont été fournis.",
            "{field} is te lang: maximaal {max} tekens zijn toegestaan, {actual} werden opgegeven.",
        ],
        Key::FieldOutOfRange => [
            "{field} må være mellom {min} og {max}.",
            "{field} måste vara mellan {min} och {max}.",
            "{field} skal være mellem {min} og {max}.",
            "{field} muss zwischen {min} und {max} liegen.",
            "{field} doit être compris entre {min} et {max}.",
            "{field} moet tussen {min} en {max} liggen.",
        ],
        Key::FieldUnknownValue => [
            "{field} har en ukjent verdi '{value}'.",
            "{field} har ett okänt värde '{value}'.",
            "{field} har en ukendt værdi '{value}'.",
            "{field} hat einen unbekannten Wert '{value}'.",
            "{field} a une valeur inconnue '{value}'.",
            "{field} heeft een onbekende waarde '{value}'.",
        ],
        Key::StateNotAllowed => [
            "State: {state} kan ikke lagres på en oppgave.",
            "State: {state} kan inte sparas på en uppgift.",
            "State: {state} kan ikke gemmes på en opgave.",
            "State: {state} kann nicht an einer Aufgabe gespeichert werden.",
            "State : {state} ne peut pas être enregistré sur une tâche.",
            "State: {state} kan niet bij een taak worden opgeslagen.",
        ],
        Key::BadStateMove => [
            "State: en oppgave kan ikke gå fra {from} til {to}.",
            "State: en uppgift kan inte gå från {from} till {to}.",
            "State: en opgave kan ikke gå fra {from} til {to}.",
            "State: eine Aufgabe kann nicht von {from} zu {to} wechseln.",
            "State : une tâche ne peut pas passer de {from} à {to}.",
            "State: een taak kan niet van {from} naar {to} gaan.",
        ],
        Key::IdMismatch => [
            "Id: innholdet sier {body}, men stien sier {path}.",
            "Id: innehållet anger {body} men sökvägen anger {path}.",
            "Id: indholdet angiver {body}, men stien angiver {path}.",
            "Id: der Inhalt nennt {body}, der Pfad aber {path}.",
            "Id : le corps indique {body} mais le chemin indique {path}.",
            "Id: de inhoud noemt {body} maar het pad noemt {path}.",
        ],
        Key::TaskNotFound => [
            "BatchTask med id {id} finnes ikke.",
            "BatchTask med id {id} hittades inte.",
            "BatchTask med id {id} blev ikke fundet.",
            "BatchTask mit der Id {id} wurde nicht gefunden.",
            "BatchTask d'id {id} introuvable.",
            "BatchTask met id {id} niet gevonden.",
        ],
        Key::TaskBusy => [
            "BatchTask {id} er {state}; stopp den før du sletter den.",
            "BatchTask {id} är {state}; stoppa den innan du tar bort den.",
            "BatchTask {id} er {state}; stop den, før du sletter den.",
            "BatchTask {id} ist {state}; halten Sie sie an, bevor Sie sie löschen.",
            "BatchTask {id} est {state} ; arrêtez-la avant de la supprimer.",
            "BatchTask {id} is {state}; stop de taak voordat u hem verwijdert.",
        ],
        Key::Stale => [
            "BatchTask {id} er endret siden versjonen du har (If-Match/If-Unmodified-Since).",
            "BatchTask {id} har ändrats sedan versionen du har (If-Match/If-Unmodified-Since).",
            "BatchTask {id} er ændret siden den version, du har (If-Match/If-Unmodified-Since).",
            "BatchTask {id} wurde seit Ihrer Version geändert (If-Match/If-Unmodified-Since).",
            "BatchTask {id} a changé depuis votre version (If-Match/If-Unmodified-Since).",
            "BatchTask {id} is gewijzigd sinds uw versie (If-Match/If-Unmodified-Since).",
        ],
        Key::Forbidden => [
            "Ingen tilgang: {reason}.",
            "Åtkomst nekad: {reason}.",
            "Adgang nægtet: {reason}.",
            "Zugriff verweigert: {reason}.",
            "Accès refusé : {reason}.",
            "Toegang geweigerd: {reason}.",
        ],
        Key::UnknownDefinition => [
            "Name: ingen oppgavedefinisjon heter '{name}'.",
            "Name: ingen uppgiftsdefinition heter '{name}'.",
            "Name: ingen opgavedefinition hedder '{name}'.",
            "Name: es gibt keine Aufgabendefinition namens '{name}'.",
            "Name : aucune définition de tâche ne s'appelle '{name}'.",
            "Name: er is geen taakdefinitie met de naam '{name}'.",
        ],
        Key::BodyUnreadable => [
            "Forespørselens innhold kan ikke leses: {detail}.",
            "Begärans innehåll kan inte läsas: {detail}.",
            "Forespørgslens indhold kan ikke læses: {detail}.",
            "Der Inhalt der Anfrage kann nicht gelesen werden: {detail}.",
            "Le corps de la requête est illisible : {detail}.",
            "De inhoud van het verzoek kan niet worden gelezen: {detail}.",
        ],
        Key::BodyNotObject => [
            "Forespørselens innhold må være et objekt med egenskapene til {type}.",
            "Begärans innehåll måste vara ett objekt med egenskaperna för {type}.",
            "Forespørgslens indhold skal være et objekt med egenskaberne for {type}.",
            "Der Inhalt der Anfrage muss ein Objekt mit den Eigenschaften von {type} sein.",
            "Le corps de la requête doit être un objet avec les propriétés de {type}.",
            "De inhoud van het verzoek moet een object met de eigenschappen van {type} zijn.",
        ],
        Key::BodyMissing => [
            "Forespørselens innhold er tomt; det må inneholde en {type}.",
            "Begärans innehåll är tomt; det måste innehålla en {type}.",
            "Forespørgslens indhold er tomt; det skal indeholde en {type}.",
            "Der Inhalt der Anfrage ist leer; er muss ein {type} enthalten.",
            "Le corps de la requête est vide ; il doit contenir un {type}.",
            "De inhoud van het verzoek is leeg; er moet een {type} in staan.",
        ],
        Key::BodyTooLarge => [
            "Forespørselens innhold er større enn {max} byte.",
            "Begärans innehåll är större än {max} byte.",
            "Forespørgslens indhold er større end {max} byte.",
            "Der Inhalt der Anfrage ist größer als {max} Byte.",
            "Le corps de la requête dépasse {max} octets.",
            "De inhoud van het verzoek is groter dan {max} bytes.",
        ],
        Key::UnsupportedMediaType => [
            "Content-Type '{type}' støttes ikke; bruk {supported}.",
            "Content-Type '{type}' stöds inte; använd {supported}.",
            "Content-Type '{type}' understøttes ikke; brug {supported}.",
            "Content-Type '{type}' wird nicht unterstützt; verwenden Sie {supported}.",
            "Le Content-Type '{type}' n'est pas pris en charge ; utilisez {supported}.",
            "Content-Type '{type}' wordt niet ondersteund; gebruik {supported}.",
        ],
        Key::BadPathSegment => [
            "'{segment}' er verken en oppgave-id eller et BatchTaskState-navn.",
            "'{segment}' är varken ett uppgifts-id eller ett BatchTaskState-namn.",
            "'{segment}' er hverken et opgave-id eller et BatchTaskState-navn.",
            "'{segment}' ist weder eine Aufgaben-Id noch ein BatchTaskState-Name.",
            "'{segment}' n'est ni un id de tâche ni un nom de BatchTaskState.",
            "'{segment}' is geen taak-id en ook geen BatchTaskState-naam.",
        ],
        Key::AuthRequired => [
            "Påloggingsinformasjon kreves: Basic, SOTicket eller Bearer.",
            "Inloggningsuppgifter krävs: Basic, SOTicket eller Bearer.",
            "Loginoplysninger er påkrævet: Basic, SOTicket eller Bearer.",
            "Anmeldedaten sind erforderlich: Basic, SOTicket oder Bearer.",
            "Des identifiants sont requis : Basic, SOTicket ou Bearer.",
            "Inloggegevens zijn vereist: Basic, SOTicket of Bearer.",
        ],
        Key::AuthFailed => [
            "Påloggingsinformasjonen ble ikke godtatt.",
            "Inloggningsuppgifterna godtogs inte.",
            "Loginoplysningerne blev ikke godkendt.",
            "Die Anmeldedaten wurden nicht akzeptiert.",
            "Les identifiants n'ont pas été acceptés.",
            "De inloggegevens zijn niet geaccepteerd.",
        ],
        Key::NotFoundRoute => [
            "Ingen endepunkt svarer på {path}.",
            "Ingen slutpunkt svarar på {path}.",
            "Intet endepunkt svarer på {path}.",
            "Kein Endpunkt beantwortet {path}.",
            "Aucun point de terminaison ne répond à {path}.",
            "Geen eindpunt beantwoordt {path}.",
        ],
        Key::MethodNotAllowed => [
            "{path} svarer ikke på {method}.",
            "{path} svarar inte på {method}.",
            "{path} svarer ikke på {method}.",
            "{path} beantwortet {method} nicht.",
            "{path} ne répond pas à {method}.",
            "{path} beantwoordt {method} niet.",
        ],
        Key::Internal => [
            "Serveren klarte ikke å behandle forespørselen. Feilen er logget.",
            "Servern kunde inte hantera begäran. Felet har loggats.",
            "Serveren kunne ikke håndtere forespørgslen. Fejlen er logget.",
            "Der Server konnte die Anfrage nicht verarbeiten. Der Fehler wurde protokolliert.",
            "Le serveur n'a pas pu traiter la requête. L'erreur a été journalisée.",
            "De server kon het verzoek niet verwerken. De fout is gelogd.",
        ],
        Key::RequestInvalid => [
            "Forespørselen er ugyldig.",
            "Begäran är ogiltig.",
            "Forespørgslen er ugyldig.",
            "Die Anfrage ist ungültig.",
            "La requête n'est pas valide.",
            "Het verzoek is ongeldig.",
        ],
        Key::ParameterMissing => [
            "Parameteren '{name}' er påkrevd.",
            "Parametern '{name}' är obligatorisk.",
            "Parameteren '{name}' er påkrævet.",
            "Der Parameter '{name}' ist erforderlich.",
            "Le paramètre '{name}' est obligatoire.",
            "De parameter '{name}' is verplicht.",
        ],
        Key::UnknownSelect => [
            "$select: '{name}' er ikke en egenskap ved {type}.",
            "$select: '{name}' är inte en egenskap hos {type}.",
            "$select: '{name}' er ikke en egenskab ved {type}.",
            "$select: '{name}' ist keine Eigenschaft von {type}.",
            "$select : '{name}' n'est pas une propriété de {type}.",
            "$select: '{name}' is geen eigenschap van {type}.",
        ],
        Key::Cancelled => [
            "Avbrutt av {who}.",
            "Avbruten av {who}.",
            "Annulleret af {who}.",
            "Abgebrochen von {who}.",
            "Annulée par {who}.",
            "Geannuleerd door {who}.",
        ],
        Key::CancelWarning => [
            "Oppgave {id} ble avbrutt selv om den er merket CancelWithWarning.",
            "Uppgift {id} avbröts trots att den är markerad CancelWithWarning.",
            "Opgave {id} blev annulleret, selvom den er markeret CancelWithWarning.",
            "Aufgabe {id} wurde abgebrochen, obwohl sie als CancelWithWarning markiert ist.",
            "La tâche {id} a été annulée bien qu'elle soit marquée CancelWithWarning.",
            "Taak {id} is geannuleerd, hoewel deze als CancelWithWarning is gemarkeerd.",
        ],
        Key::FilterInvalid => [
            "$filter: ved posisjon {position} var {expected} ventet, men fant {found}.",
            "$filter: vid position {position} förväntades {expected}, men {found} hittades.",
            "$filter: ved position {position} var {expected} forventet, men fandt {found}.",
            "$filter: an Position {position} wurde {expected} erwartet, aber {found} gefunden.",
            "$filter : à la position {position}, {expected} était attendu, mais {found} a été trouvé.",
            "$filter: op positie {position} werd {expected} verwacht, maar {found} gevonden.",
        ],
        Key::PatchReadOnly => [
            "{field} kan ikke endres: en patch kan bare endre State, Description, Response og Request.",
            "{field} kan inte ändras: en patch får bara ändra State, Description, Response och Request.",
            "{field} kan ikke ændres: en patch må kun ændre State, Description, Response og Request.",
            "{field} kann nicht geändert werden: ein Patch darf nur State, Description, Response und Request ändern.",
            "{field} ne peut pas être modifié : un patch ne peut modifier que State, Description, Response et Request.",
            "{field} kan niet worden gewijzigd: een patch mag alleen State, Description, Response en Request wijzigen.",
        ],
        Key::PatchTestFailed => [
            "Patch-operasjon {operation} (test) feilet: {path} har ikke den oppgitte verdien.",
            "Patch-operation {operation} (test) misslyckades: {path} har inte det angivna värdet.",
            "Patch-operation {operation} (test) mislykkedes: {path} har ikke den angivne værdi.",
            "Patch-Operation {operation} (test) ist fehlgeschlagen: {path} hat nicht den angegebenen Wert.",
            "L'opération de patch {operation} (test) a échoué : {path} n'a pas la valeur indiquée.",
            "Patchbewerking {operation} (test) is mislukt: {path} heeft niet de opgegeven waarde.",
        ],
        Key::PatchPathInvalid => [
            "Patch-operasjon {operation}: stien '{path}' finnes ikke i oppgaven.",
            "Patch-operation {operation}: sökvägen '{path}' finns inte i uppgiften.",
            "Patch-operation {operation}: stien '{path}' findes ikke i opgaven.",
            "Patch-Operation {operation}: der Pfad '{path}' existiert in der Aufgabe nicht.",
            "Opération de patch {operation} : le chemin '{path}' n'existe pas dans la tâche.",
            "Patchbewerking {operation}: het pad '{path}' bestaat niet in de taak.",
        ],
        Key::PatchNotAllowedType => [
            "PATCH tar imot application/json-patch+json eller application/merge-patch+json, ikke '{type}'.",
            "PATCH tar emot application/json-patch+json eller application/merge-patch+json, inte '{type}'.",
            "PATCH modtager application/json-patch+json eller application/merge-patch+json, ikke '{type}'.",
            "PATCH akzeptiert application/json-patch+json oder application/merge-patch+json, nicht '{type}'.",
            "PATCH accepte application/json-patch+json ou application/merge-patch+json, pas '{type}'.",
            "PATCH accepteert application/json-patch+json of application/merge-patch+json, niet '{type}'.",
        ],
        // Keys added later fall back to English until they get a row here.
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

pub fn lookup(key: Key, lang: Lang) -> Option<&'static str> {
    Some(row(key)?[column(lang)?])
}

pub fn type_word(w: TypeWord, lang: Lang) -> Option<&'static str> {
    let row: Row = match w {
        TypeWord::Integer => {
            ["et heltall", "ett heltal", "et heltal", "eine ganze Zahl", "un nombre entier", "een geheel getal"]
        }
        TypeWord::Boolean => [
            "true eller false",
            "true eller false",
            "true eller false",
            "true oder false",
            "true ou false",
            "true of false",
        ],
        TypeWord::Text => ["tekst", "text", "tekst", "Text", "du texte", "tekst"],
        TypeWord::DateTime => [
            "et tidspunkt som 2024-05-01T12:00:00+02:00",
            "en tidpunkt som 2024-05-01T12:00:00+02:00",
            "et tidspunkt som 2024-05-01T12:00:00+02:00",
            "ein Zeitpunkt wie 2024-05-01T12:00:00+02:00",
            "une date et heure comme 2024-05-01T12:00:00+02:00",
            "een tijdstip zoals 2024-05-01T12:00:00+02:00",
        ],
        TypeWord::State => [
            "et BatchTaskState-navn eller -nummer",
            "ett BatchTaskState-namn eller -nummer",
            "et BatchTaskState-navn eller -nummer",
            "ein BatchTaskState-Name oder eine -Nummer",
            "un nom ou un numéro de BatchTaskState",
            "een BatchTaskState-naam of -nummer",
        ],
        TypeWord::Cancellation => [
            "CanCancel, CancelWithWarning eller CannotCancel",
            "CanCancel, CancelWithWarning eller CannotCancel",
            "CanCancel, CancelWithWarning eller CannotCancel",
            "CanCancel, CancelWithWarning oder CannotCancel",
            "CanCancel, CancelWithWarning ou CannotCancel",
            "CanCancel, CancelWithWarning of CannotCancel",
        ],
        TypeWord::StringDictionary => [
            "et objekt med tekstverdier",
            "ett objekt med textvärden",
            "et objekt med tekstværdier",
            "ein Objekt mit Textwerten",
            "un objet de valeurs texte",
            "een object met tekstwaarden",
        ],
        TypeWord::IntegerList => [
            "en liste med heltall",
            "en lista med heltal",
            "en liste med heltal",
            "eine Liste ganzer Zahlen",
            "une liste de nombres entiers",
            "een lijst met gehele getallen",
        ],
        TypeWord::Object => ["et objekt", "ett objekt", "et objekt", "ein Objekt", "un objet", "een object"],
    };
    Some(row[column(lang)?])
}

/// Reasons (the domain's `Forbidden` texts and rights reasons), keyed by their English text.
pub fn reason(english: &str, lang: Lang) -> Option<&'static str> {
    let row: Row = match english {
        "only workers and admins may create system tasks" => [
            "bare arbeidere og administratorer kan opprette systemoppgaver",
            "endast arbetare och administratörer får skapa systemuppgifter",
            "kun arbejdere og administratorer må oprette systemopgaver",
            "nur Worker und Administratoren dürfen Systemaufgaben anlegen",
            "seuls les workers et les administrateurs peuvent créer des tâches système",
            "alleen workers en beheerders mogen systeemtaken aanmaken",
        ],
        "only admins may create tasks for another associate" => [
            "bare administratorer kan opprette oppgaver for en annen medarbeider",
            "endast administratörer får skapa uppgifter åt en annan medarbetare",
            "kun administratorer må oprette opgaver for en anden medarbejder",
            "nur Administratoren dürfen Aufgaben für einen anderen Mitarbeiter anlegen",
            "seuls les administrateurs peuvent créer des tâches pour un autre collaborateur",
            "alleen beheerders mogen taken voor een andere medewerker aanmaken",
        ],
        "you may not update this task" => [
            "du kan ikke endre denne oppgaven",
            "du får inte ändra den här uppgiften",
            "du må ikke ændre denne opgave",
            "Sie dürfen diese Aufgabe nicht ändern",
            "vous ne pouvez pas modifier cette tâche",
            "u mag deze taak niet wijzigen",
        ],
        "you may not stop this task" => [
            "du kan ikke stoppe denne oppgaven",
            "du får inte stoppa den här uppgiften",
            "du må ikke stoppe denne opgave",
            "Sie dürfen diese Aufgabe nicht anhalten",
            "vous ne pouvez pas arrêter cette tâche",
            "u mag deze taak niet stoppen",
        ],
        "you may not delete this task" => [
            "du kan ikke slette denne oppgaven",
            "du får inte ta bort den här uppgiften",
            "du må ikke slette denne opgave",
            "Sie dürfen diese Aufgabe nicht löschen",
            "vous ne pouvez pas supprimer cette tâche",
            "u mag deze taak niet verwijderen",
        ],
        "the task cannot be stopped" => [
            "oppgaven kan ikke stoppes",
            "uppgiften kan inte stoppas",
            "opgaven kan ikke stoppes",
            "die Aufgabe kann nicht angehalten werden",
            "la tâche ne peut pas être arrêtée",
            "de taak kan niet worden gestopt",
        ],
        _ => return None,
    };
    Some(row[column(lang)?])
}
